"""The simulator's two schedules and its synapse operations: the layer schedule equals the step
schedule bit for bit, merged operations equal their parts, and sparse groups of large populations
run without dense matrices. (Simulator == Lava: tests/test_chip_exact.py.)"""

from __future__ import annotations

import dataclasses
import gc
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from snn2chip import memory
from snn2chip.backends import simulator
from snn2chip.backends.sim import neurons, ops, schedule
from snn2chip.chip import loihi
from snn2chip.chip.ir import ChipNet, Population, SynapseGroup
from snn2chip.errors import ModelError
from tests.test_chip_exact import LIF_POPS, random_net

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"


def split_signs(groups: tuple[SynapseGroup, ...]) -> tuple[SynapseGroup, ...]:
    """Every group as an excitatory and an inhibitory half (same geometry, exponent and delays)."""
    halves = []
    for g in groups:
        w = np.asarray(g.weights)
        halves += [dataclasses.replace(g, name=f"{g.name}{sign}", weights=part)
                   for sign, part in (("+", np.maximum(w, 0)), ("-", np.minimum(w, 0)))]
    return tuple(halves)


def variant(net: ChipNet, *, split: bool, recurrent: bool, bias: bool) -> ChipNet:
    """``net`` from :func:`random_net` with its groups sign-split, without its recurrent groups, or
    with an always-on bias neuron feeding the conv and fc populations through delayed groups."""
    pops, groups = dict(net.populations), net.groups
    if not recurrent:
        groups = tuple(g for g in groups if g.name not in ("rec", "back"))
    if bias:
        pops["on"] = Population("on", "lif", (1,), bias_mant=np.ones(1, np.int64), vth=0)
        size = pops["conv"].size
        groups += (SynapseGroup("on_conv", "dense", "on", "conv", np.full((size, 1), 40), delays=np.full((size, 1), 2)),
                   SynapseGroup("on_fc", "dense", "on", "fc", -np.arange(9).reshape(9, 1), weight_exp=-1))
    return ChipNet(pops, split_signs(groups) if split else groups, net.inputs, net.outputs)


def assert_schedules_agree(net: ChipNet, x: np.ndarray, record: list[str], probe: list[str]) -> dict:
    """Both schedules give the same records, probes and activity tallies; the tallies count the records."""
    rng = np.random.default_rng(1)
    weights = {p: rng.integers(0, 9, net.populations[p].size) for p in record}
    layer = simulator.simulate(net, x, record=record, probe=probe, schedule="layer", activity=weights)
    step = simulator.simulate(net, x, record=record, probe=probe, schedule="step", activity=weights)
    tallies = [f"{p}:{what}" for p in record for what in ("messages", "weighted")]
    assert sorted(layer) == sorted(step) == sorted(record + [f"{p}.{v}" for p in probe for v in "uv"] + tallies)
    for key in step:
        np.testing.assert_array_equal(layer[key], step[key], err_msg=key)
    windows = {p: (1, 3) for p in record if not net.populations[p].payload_bits}  # binary ones: int8
    for order in ("layer", "step"):
        cut = simulator.simulate(net, x, record=record, schedule=order, windows=windows)
        for p, (first, stop) in windows.items():
            assert cut[p].dtype == np.int8 and np.array_equal(cut[p], layer[p][:, first:stop]), (order, p)
    for p in record:
        per_neuron = (layer[p] != 0).sum(1).reshape(len(x), -1)
        np.testing.assert_array_equal(layer[f"{p}:messages"], per_neuron.sum(1), err_msg=p)
        np.testing.assert_array_equal(layer[f"{p}:weighted"], per_neuron @ weights[p], err_msg=p)
    return layer


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), graded_input=st.booleans(), delays=st.booleans(), stress=st.booleans(),
       stride=st.sampled_from([1, 2]), groups=st.sampled_from([1, 2]), subtract=st.booleans(), split=st.booleans(),
       recurrent=st.booleans(), bias=st.booleans())
def test_layer_schedule_equals_step_schedule(seed, graded_input, delays, stress, stride, groups, subtract, split,
                                            recurrent, bias):
    net, x = random_net(seed, graded_input, delays, stress, stride, groups, subtract)
    net = variant(net, split=split, recurrent=recurrent, bias=bias)
    out = assert_schedules_agree(net, x, ["in", "conv", "fc", "relay", "out"], LIF_POPS)
    assert out["conv"].any()  # the network is active: the comparison is not vacuous


def _parts_net(kind: str, n: int, exps: list[int], bits: int, stress: bool, rng) -> ChipNet:
    """A source and a destination joined by ``len(exps)`` groups of one kind and geometry."""
    src = Population("s", "input", (2, 5, 5) if kind == "conv" else (12,), payload_bits=bits)
    dst_shape = (3, 3, 3) if kind == "conv" else (7,)
    high = 2**22 if stress and kind == "conv" else 256
    groups = []
    for i, exp in enumerate(exps):
        step = 1 << int(rng.integers(0, 4))  # some weights multiples of 2**k: exact right shifts
        if kind == "conv":
            w = rng.integers(-high, high, (3, 2, 3, 3)) // step * step
            groups.append(SynapseGroup(f"g{i}", "conv", "s", "d", w, stride=(2, 2), padding=(1, 1)))
        elif kind == "dense":
            groups.append(SynapseGroup(f"g{i}", "dense", "s", "d", rng.integers(-256, 256, (7, 12)) // step * step,
                                       weight_exp=exp))
        else:
            rows, cols = np.divmod(rng.permutation(7 * 12)[:n], 12)  # distinct (row, col) pairs
            groups.append(SynapseGroup(f"g{i}", "sparse", "s", "d", rng.integers(-256, 256, n) // step * step,
                                       rows=rows, cols=cols, weight_exp=exp))
    pops = {"s": src, "d": Population("d", "relay", dst_shape, payload_bits=24)}
    return ChipNet(pops, tuple(groups), ("s",), ("d",))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["conv", "dense", "sparse"]),
       exps=st.lists(st.integers(-3, 3), min_size=2, max_size=3), bits=st.sampled_from([0, 8, 24]),
       stress=st.booleans())
def test_merged_ops_equal_the_sum_of_their_parts(seed, kind, exps, bits, stress):
    """Merging is exact: the int32 sum of the merged ops' inputs equals that of the groups' own
    ops, with shifts, graded payloads and wraps (conv sums beyond 2**23 are left unmerged)."""
    rng = np.random.default_rng(seed)
    net = _parts_net(kind, 9, exps, bits, stress, rng)
    payload = ops.sent_bound(net.populations["s"], None)
    x = torch.as_tensor(rng.integers(-payload, payload, (4, *net.populations["s"].shape)) if bits
                        else rng.integers(0, 2, (4, *net.populations["s"].shape)), dtype=torch.int32)
    parts = [p for g in net.groups for p in ops.group_parts(g, net.populations["s"])]
    merged = ops.merge(parts, payload)
    alone = sum(ops.make_op(p, payload, net)(x) for p in parts)
    together = sum(ops.make_op(p, payload, net)(x) for p in merged)
    assert torch.equal(alone, together)
    if kind == "dense" and min(exps) >= 0 or kind == "conv" and not stress and not bits:
        assert len(merged) == 1


def test_sign_split_halves_become_one_op():
    net, _ = random_net(seed=1, graded_input=False, delays=False, stress=False, stride=1, groups=1)
    split = variant(net, split=True, recurrent=True, bias=False)
    by_group = {op.names for op in schedule.Plan(split).ops}
    assert ("c1+", "c1-") in by_group and ("rec+", "rec-") not in by_group  # rec: weight_exp -1, odd weights


@pytest.mark.parametrize("diagonal", [True, False])
def test_large_sparse_population_runs_without_dense_matrices(diagonal):
    """200,000 neurons: a dense (dst, src) matrix would take 320 GB; the estimate and the run stay small."""
    n, rng = 200_000, np.random.default_rng(0)
    pairs = rng.permutation(np.unique(rng.integers(0, n * n, 2 * n)))  # distinct (row, col) pairs
    rows, cols = (np.arange(n), np.arange(n)) if diagonal else np.divmod(pairs, n)
    pops = {"in": Population("in", "input", (n,)), "a": Population("a", "lif", (n,), vth=20, dv=64)}
    group = SynapseGroup("sp", "sparse", "in", "a", rng.integers(1, 256, len(rows)), rows=rows, cols=cols,
                         delays=rng.integers(0, 3, len(rows)))
    net = ChipNet(pops, (group,), ("in",), ("a",))
    for sched in schedule.SCHEDULES:
        assert sum(b for b, _ in simulator.estimate_bytes(net, 2, 2, 5, ["a"], ["a"], schedule=sched)) < 2**30
    assert sum(op.nbytes for op in schedule.Plan(net).ops) < 2**25  # the ops' weights: 32 MiB at most
    x = (rng.random((2, 5, n)) < 0.3).astype(np.float64)
    out = assert_schedules_agree(net, x, ["a"], ["a"])
    if diagonal:  # u is this step's input << 6: the delayed, weighted spikes
        arrived = np.zeros((2, 5, n), np.int64)
        for d in range(3):
            mask = group.delays == d
            arrived[:, 1 + d :, mask] += x[:, : 4 - d, mask].astype(np.int64) * group.weights[mask]
        np.testing.assert_array_equal(out["a.u"], arrived << 6)


def test_delay_queues_and_weights_do_not_grow_with_the_delay():
    """One distinct delay of 60 steps costs the weights of one matrix, not 61."""
    net, _ = random_net(seed=2, graded_input=False, delays=False, stress=False, stride=1, groups=1)
    far = ChipNet(net.populations, tuple(dataclasses.replace(g, delays=np.full(g.weights.shape, 60)) if g.name == "d2"
                                         else g for g in net.groups), net.inputs, net.outputs)
    near_bytes, far_bytes = ({what: b for b, what in simulator.estimate_bytes(n, 2, 2, 70, ["out"], [])}
                             for n in (net, far))
    assert near_bytes["synapse group 'd2'"] == far_bytes["synapse group 'd2'"]
    assert [op.lag for op in schedule.Plan(far).ops if op.names == ("d2",)] == [61]


def test_plans_are_kept_while_their_network_lives():
    net, x = random_net(seed=6, graded_input=False, delays=False, stress=False, stride=1, groups=1)
    simulator.simulate(net, x)
    key = id(net)
    assert simulator._known(net).plan is not None
    del net
    gc.collect()
    assert key not in simulator._KNOWN


def test_schedule_is_checked_and_memory_picks_a_smaller_chunk(monkeypatch):
    net, x = random_net(seed=4, graded_input=False, delays=True, stress=False, stride=1, groups=1)
    with pytest.raises(ModelError, match="unknown schedule 'fast'; expected one of layer, step"):
        simulator.simulate(net, x, schedule="fast")
    full = simulator.simulate(net, x, record=LIF_POPS)
    needed = sum(b for b, _ in simulator.estimate_bytes(net, 3, 3, 10, LIF_POPS, []))
    monkeypatch.setenv(memory.ENV, str(needed - 1))  # all three samples at once do not fit; one at a time does
    runs = []
    run = schedule.run
    monkeypatch.setattr(schedule, "run", lambda plan, part, *a: runs.append(len(part["in"][0])) or run(plan, part, *a))
    for key, values in simulator.simulate(net, x, record=LIF_POPS).items():
        np.testing.assert_array_equal(values, full[key], err_msg=key)
    assert runs == [1, 1, 1]


@pytest.mark.slow
@pytest.mark.parametrize("name, strategy", [("sew_add", "expand"), ("ms_resnet", "relay")])
def test_schedules_agree_on_compiled_zoo_models(name, strategy):
    from snn2chip import compiler
    from snn2chip.passes.quantize import Options
    from snn2chip.verify import data, fidelity

    steps = json.loads((ZOO / "zoo.json").read_text())["models"][name]["time_steps"]
    _, net, _ = compiler.compile_file(ZOO / f"{name}.nir", options=Options(steps=steps, input_bits=6, input_scale=16,
                                                                          strategy=strategy))
    x = fidelity.chip_inputs(net, np.asarray(data.digits_split()[2][:16]), steps)
    lif = [p for p, pop in net.populations.items() if pop.kind == "lif"]
    out = assert_schedules_agree(net, x, list(net.populations), lif)
    assert sum(int(np.abs(out[p]).sum()) for p in net.populations) > 1000


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), du=st.sampled_from([4095, 4095, 0, 1000, 4094]),
       dv=st.sampled_from([0, 3072, 1000, 4032, 4094, 4095]), vth=st.sampled_from([0, 1, 96, 4095, 2**17 - 1]),
       subtract=st.booleans(), bias=st.booleans(), magnitude=st.sampled_from([1, 2**5, 2**17, 2**31 - 1]))
@example(seed=0, du=4095, dv=4095, vth=96, subtract=False, bias=False, magnitude=2**5)  # resting shortcut holds
@example(seed=1, du=4095, dv=4094, vth=1, subtract=True, bias=False, magnitude=1)
def test_neuron_update_equals_lavas_lif_step(seed, du, dv, vth, subtract, bias, magnitude):
    """The two-pass int32 LIF update (currents, then voltages; float products, int32 masks, the
    resting shortcut) equals :func:`loihi.lif_step` step by step, in both schedules' calls, for
    inputs up to int32 extremes (u wraps, v clips) and every reset and decay kind; u stays within
    the bound that keeps v's int32 sum from wrapping."""
    rng = np.random.default_rng(seed)
    steps, batch, size = 6, 3, 40000  # 120,000 neurons x samples: several row slices
    vsub = min(vth + int(rng.integers(0, 3)), loihi.VTH_MAX) if subtract and vth else 0
    pop = Population("p", "lif", (size,), du=du, dv=dv, vth=vth, vsub=vsub, reset="subtract" if vsub else "zero",
                     bias_mant=rng.integers(-4096, 4096, size) if bias else None, bias_exp=int(rng.integers(0, 8)))
    a = torch.as_tensor(rng.integers(-magnitude, magnitude, (steps, batch, size), endpoint=True), dtype=torch.int32)
    a[:, :, rng.random(size) < 0.5] = 0  # some neurons rest
    effective = None if not bias else torch.as_tensor(loihi.effective_bias(pop.bias_mant, pop.bias_exp).astype(np.int32))
    u = v = torch.zeros((batch, size), dtype=torch.int32)
    expected = {"spikes": [], "u": [], "v": []}
    for t in range(steps):
        u, v, spikes = loihi.lif_step(u, v, a[t], du, dv, effective, vth, vsub)
        for key, value in zip(expected, (spikes, u, v)):
            expected[key].append(value)
    expected = {key: torch.stack(values) for key, values in expected.items()}
    assert int(expected["u"].abs().max()) <= 2**31 - 2**24
    layer = neurons.Neurons(pop, batch, steps, probed=True)
    spikes = layer.run(lambda rows: a[:, rows].clone(), 0)
    step = neurons.Neurons(pop, batch, steps, probed=True)
    stepped = torch.stack([step.step(t, a[t]) for t in range(steps)])
    for got, probes in ((spikes, layer.probes), (stepped, step.probes)):
        assert torch.equal(got, expected["spikes"])
        assert torch.equal(probes["u"], expected["u"]) and torch.equal(probes["v"], expected["v"])


@pytest.mark.parametrize("stride, padding, kernel", [(1, 1, 3), (2, 1, 3), (2, 0, 1), (1, 0, 2)])
def test_dense_groups_that_are_convolutions_run_as_convolutions(stride, padding, kernel):
    """A dense group whose matrix is a convolution's (as the compiler makes for composed
    shortcuts) is found to be one and runs as it, with its shift; a matrix that differs from
    a convolution in one weight, or lacks one synapse, runs as a matrix. Same results."""
    rng = np.random.default_rng(stride + 3 * padding + 7 * kernel)
    weights = rng.integers(-255, 256, (6, 4, kernel, kernel)) * (rng.random((6, 4, kernel, kernel)) < 0.6)
    src_shape = (4, 16, 16)
    size = (16 + 2 * padding - kernel) // stride + 1
    dst_shape = (6, size, size)
    basis = torch.eye(int(np.prod(src_shape)), dtype=torch.float64).reshape(-1, *src_shape)
    conv = torch.nn.functional.conv2d(basis, torch.as_tensor(weights, dtype=torch.float64), None, stride, padding)
    matrix = conv.reshape(len(basis), -1).T.round().to(torch.int64).numpy()  # (dst, src)
    pops = {"s": Population("s", "input", src_shape), "d": Population("d", "relay", dst_shape, payload_bits=24)}
    x = torch.as_tensor(rng.random((5, *src_shape)) < 0.5)
    nnz = np.flatnonzero(matrix)
    changed, dropped = matrix.copy(), matrix.copy()
    changed.flat[nnz[np.abs(matrix.flat[nnz]) < 200][0]] += 2  # a change the effective weights keep
    dropped.flat[nnz[-1]] = 0
    for w, is_conv in ((matrix, True), (changed, False), (dropped, False)):
        group = SynapseGroup("g", "dense", "s", "d", w, weight_exp=1)
        net = ChipNet(pops, (group,), ("s",), ("d",))
        part = ops.group_parts(group, pops["s"])[0]
        assert part.kind == "sparse"  # few non-zero weights among many
        op = ops.make_op(part, 1, net)
        assert isinstance(op, ops._ShiftedConv) == is_conv
        if is_conv:
            assert op.geometry[:2] == ((stride, stride), (padding, padding))
            effective = loihi.effective_weights(weights)
            assert np.array_equal(op.kernel.numpy(), effective[:, :, : op.kernel.shape[2], : op.kernel.shape[3]])
        dense = x.reshape(5, -1).to(torch.int64) @ torch.as_tensor(loihi.effective_weights(w)).T << 1
        assert torch.equal(op(x).reshape(5, -1).to(torch.int64), dense)


def test_row_slices_stay_below_torchs_parallel_grain():
    for batch, size in [(64, 1024), (64, 512), (3, 40000), (1, 10), (100, 7)]:
        slices = neurons.row_slices(batch, size)
        covered = [i for s in slices for i in range(*s.indices(batch))]
        assert covered == list(range(batch))
        assert all(len(range(*s.indices(batch))) * size < neurons.GRAIN for s in slices) or size >= neurons.GRAIN
