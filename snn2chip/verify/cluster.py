"""The shards of a ``verify`` run on a Ray cluster (``verify --ray [ADDRESS]``).

The float graph and the compiled network go to Ray's object store once, each shard's inputs
once. One task per shard runs it with a :class:`~snn2chip.verify.shards.Worker` that each worker
process builds once and keeps, and returns its :class:`~snn2chip.verify.shards.Shard`; the
driver merges them in sample order, so the report equals a one-process run's.

A task whose worker process dies is run again by Ray (``max_retries``). A small actor counts
each shard's attempts and the samples done so far: it drives the progress bar, and
:attr:`Cluster.retried` reports the shards that ran again. Ray is imported only here (the
``ray`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Callable, Iterator

import numpy as np

from snn2chip import memory
from snn2chip.chip.ir import ChipNet
from snn2chip.errors import ModelError
from snn2chip.frontend.graph import Graph
from snn2chip.verify import shards

MAX_RETRIES = 3  #: runs of a shard after the first when its worker dies
POLL_S = 0.5  #: seconds between progress updates
_workers: dict[str, shards.Worker] = {}  # per worker process: the Worker of the network it runs


def _ray():
    try:
        import ray
    except ImportError:
        raise ModelError("Ray is not installed: --ray needs the 'ray' extra (pip install 'snn2chip[ray]')",
                         option="--ray") from None
    return ray


def _reachable(address: str) -> None:
    """One clear line now, rather than Ray's minutes of retries, when nothing listens at ``HOST:PORT``."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # 'auto' and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ModelError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}", option="--ray") from None


def _node_cpus(ray) -> int:
    """CPUs of the Ray node this process runs on."""
    node = ray.get_runtime_context().get_node_id()
    return max(1, int(next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)))


def run_shard(network, x: np.ndarray, start: int, tracker) -> shards.Shard:
    """A Ray task: the shard of samples ``x`` from ``start``, with the Worker of ``network`` (a
    one-element list holding the object ref of ``(graph, net, steps, dt)``, so that each worker
    process fetches and builds it once), within this process's share of the node's memory."""
    ray = _ray()
    ref = network[0]
    if ref.hex() not in _workers:
        _workers.clear()  # an earlier run's network: not needed again
        _workers[ref.hex()] = shards.Worker(*ray.get(ref))
    ray.get(tracker.start.remote(start))  # counted before any work, so that a retry is seen
    with memory.limited(memory.budget() // _node_cpus(ray)):
        return _workers[ref.hex()].shard(np.array(x), start, lambda n: tracker.advance.remote(start, n))


def _warm() -> None:
    """A task that makes its worker process import what shards need (it returns at once after)."""
    import snn2chip.verify.shards  # noqa: F401


class _Tracker:
    """Attempts and samples done per shard (a Ray actor; a new attempt starts its count anew)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget the shards of an earlier run."""
        self.attempts: dict[int, int] = {}
        self.done: dict[int, int] = {}

    def start(self, shard: int) -> None:
        self.attempts[shard] = self.attempts.get(shard, 0) + 1
        self.done[shard] = 0

    def advance(self, shard: int, n: int) -> None:
        self.done[shard] = self.done.get(shard, 0) + n

    def state(self) -> tuple[int, int]:
        """Samples done, and shards that ran more than once."""
        return sum(self.done.values()), sum(a > 1 for a in self.attempts.values())


class Cluster:
    """Runs shards as Ray tasks on the cluster this process is connected to (see :func:`connect`).
    ``task``: the function each task runs (:func:`run_shard`, or a wrapper of it)."""

    mode = "ray"

    def __init__(self, ray, workers: int, local_workers: int, task: Callable = run_shard):
        self.ray, self.workers, self.local_workers, self.retried = ray, workers, local_workers, 0
        self.task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(task)
        # Started now, so that the actor's and the workers' processes (each imports snn2chip and
        # torch, seconds) start while the caller compiles rather than when the first shard waits.
        self.tracker = ray.remote(num_cpus=0)(_Tracker).remote()
        self.warming = [ray.remote(_warm).remote() for _ in range(workers)]

    def shards(self, graph: Graph, net: ChipNet, steps: int, dt: float | None, x: np.ndarray,
               jobs: list[tuple[int, int]], advance: Callable[[int], None]) -> Iterator[shards.Shard]:
        """The :class:`~snn2chip.verify.shards.Shard` of each job ``[start, stop)`` of ``x``, as each finishes."""
        ray, tracker = self.ray, self.tracker
        ray.get(tracker.reset.remote())
        network = [ray.put((graph, net, steps, dt))]
        pending = {self.task.remote(network, ray.put(np.ascontiguousarray(x[a:b])), a, tracker): (a, b) for a, b in jobs}
        shown = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            done, self.retried = ray.get(tracker.state.remote())
            advance(done - shown)
            shown = done
            for ref in ready:
                yield self._result(ref, pending.pop(ref))
        advance(sum(b - a for a, b in jobs) - shown)

    def _result(self, ref, job: tuple[int, int]) -> shards.Shard:
        """The shard ``ref`` computed, or one line on why it could not be."""
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, ModelError):
                raise e.cause from None
            raise
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError) as e:
            reason = str(e).strip().splitlines()[0]
            raise ModelError(f"the Ray workers running samples {job[0]}-{job[1] - 1} died {MAX_RETRIES + 1} times "
                             f"(the last: {reason})", option="--ray") from None


@contextlib.contextmanager
def connect(address: str | None, task: Callable = run_shard) -> Iterator[Cluster]:
    """A :class:`Cluster` on the Ray cluster at ``address`` (``HOST:PORT``, ``ray://HOST:PORT`` or
    ``auto``), or on a local Ray instance started for the block (``None``; one already started in
    this process is used as it is). One line and no traceback when it cannot be reached or has no CPUs."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        if address:
            _reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ModelError(f"cannot connect to Ray at {address or 'a new local instance'}: "
                             f"{str(e).strip().splitlines()[0]}", option="--ray") from None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            raise ModelError(f"the Ray cluster {'at ' + address if address else 'of this process'} has no CPUs "
                             "to run tasks on", option="--ray")
        local = cpus if started and not address else 1
        yield Cluster(ray, cpus, local, task)
    finally:
        if started:
            ray.shutdown()
