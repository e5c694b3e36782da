"""verify --ray: on a local Ray cluster of 2 worker processes the report equals the one-process
run's (apart from 'execution'), a worker killed during a shard is retried with the same result,
and a cluster that cannot be reached or has no CPUs gets one line and exit code 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="needs Ray: the 'ray' extra")

from snn2chip import verify  # noqa: E402
from snn2chip.cli import main  # noqa: E402
from snn2chip.compiler import compile_file  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402
from snn2chip.report import text  # noqa: E402
from snn2chip.verify import cluster, data  # noqa: E402

pytestmark = pytest.mark.slow
ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
SEW_ADD = ZOO / "sew_add.nir"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs (2 worker processes) for this module; verify uses it as it is."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the tasks below run this module's code
    yield
    ray.shutdown()


def _without_execution(text_out: str) -> tuple[dict, dict]:
    report = json.loads(text_out)
    return {k: v for k, v in report.items() if k != "execution"}, report["execution"]


def test_ray_gives_the_json_of_one_process(capsys, local_ray):
    """The done-when command of the issue: all 450 digits test images, with and without --ray."""
    args = ["verify", str(SEW_ADD), "--data", "digits", "--samples", "450", "--json"]
    assert main(args) == 0
    alone, how_alone = _without_execution(capsys.readouterr().out)
    assert main([*args, "--ray"]) == 0
    on_ray, how = _without_execution(capsys.readouterr().out)
    assert on_ray == alone
    assert how_alone["mode"] == "local" and how["mode"] == "ray" and how["workers"] == 2
    assert how["shards"] == 8 and how["retried"] == 0 and how["resumed"] == 0
    assert alone["samples"] == 450 and 0.9 < alone["chip_accuracy"] and alone["layers"]


def test_the_golden_check_sees_the_merged_outputs(capsys, local_ray):
    golden = Path(__file__).resolve().parent / "golden" / "sew_add.npz"
    code = main(["verify", str(SEW_ADD), "--data", "digits", "--samples", "20", "--shard-size", "8",
                 "--golden", str(golden), "--ray"])
    out = capsys.readouterr().out
    assert code == 0 and f"PASS golden: outputs equal {golden}" in out


def _dying_tracker(tracker):
    """``tracker`` as seen by a shard whose worker process dies at its first progress report."""
    return types.SimpleNamespace(start=tracker.start,
                                 advance=types.SimpleNamespace(remote=lambda *_: os.kill(os.getpid(), signal.SIGKILL)))


def _dies_once(mark: Path):
    """A task that kills its own worker process in the middle of the shard from sample 16, once."""
    def task(network, x, start, tracker):
        if start == 16 and not mark.exists():
            mark.touch()
            tracker = _dying_tracker(tracker)
        return cluster.run_shard(network, x, start, tracker)
    return task


@pytest.fixture(scope="module")
def sew_add_net():
    graph, net, _ = compile_file(SEW_ADD, "loihi2", Options(input_bits=6, input_scale=16.0, steps=4))
    dataset = data.load("digits", graph.out_shapes[graph.inputs[0]]).head(64)
    return graph, net, dataset, verify.settings(graph, dataset, "digits", 4, None, None)


def test_a_worker_killed_during_a_shard_is_retried_and_the_result_is_unchanged(local_ray, sew_add_net, tmp_path):
    graph, net, dataset, setup = sew_add_net
    alone = verify.run(graph, net, dataset, setup, shard_size=16)
    with cluster.connect(None, task=_dies_once(tmp_path / "died")) as executor:
        on_ray = verify.run(graph, net, dataset, setup, shard_size=16, executor=executor)
    assert (tmp_path / "died").exists()  # the worker did die
    assert on_ray.report.execution.retried == 1
    assert "4 shards of up to 16 samples on Ray (2 CPUs) (1 retried after a worker died)" in text.verify_table(on_ray.report)
    strip = lambda r: {k: v for k, v in r.report.to_json().items() if k != "execution"}
    assert strip(on_ray) == strip(alone)
    for key, values in alone.outputs.items():
        np.testing.assert_array_equal(on_ray.outputs[key], values)
    np.testing.assert_array_equal(on_ray.predictions, alone.predictions)


def _cli(*args: str, setup: str = "pass") -> subprocess.CompletedProcess:
    """snn2chip verify in a fresh interpreter (after ``setup``, e.g. starting Ray)."""
    code = f"import sys; {setup}; from snn2chip.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_an_unreachable_cluster_is_one_line_and_exit_1():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = _cli("verify", str(SEW_ADD), "--data", "digits", "--samples", "4", "--ray", f"127.0.0.1:{port}")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"snn2chip: error: option --ray: cannot reach the Ray cluster at 127.0.0.1:{port}: "
                           "Connection refused\n")


def test_a_cluster_without_cpus_is_one_line_and_exit_1():
    done = _cli("verify", str(SEW_ADD), "--data", "digits", "--samples", "4", "--ray",
                setup="import ray; ray.init(num_cpus=0, include_dashboard=False, logging_level='ERROR')")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == \
        "snn2chip: error: option --ray: the Ray cluster of this process has no CPUs to run tasks on"
