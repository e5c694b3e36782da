"""Float reference executor against hand-computed traces and direct torch computations."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import snn2chip
from snn2chip import ModelError
from snn2chip.frontend.graph import make_graph
from tests.conftest import NORSE, SINABS, arr, chain

F64 = torch.float64


def graph_of(*nodes, shape=(1,), out=None, edges_extra=(), metadata=None):
    all_nodes, edges = chain(*nodes, shape=shape, out=out)
    return make_graph(all_nodes, edges + list(edges_extra), metadata=metadata)


def trace(graph, x, node, steps=None, **kw):
    """Output of ``node`` for sample 0, flattened per step."""
    result = snn2chip.run(graph, np.asarray(x, dtype=np.float64), steps, record=[node], dtype=F64, **kw)
    return result[node][0].reshape(result[node].shape[1], -1)


def spike_steps(values) -> list[int]:
    return [int(t) for t in np.nonzero(values[:, 0])[0]]


def one(v):
    return np.array([v], dtype=np.float64)


# --- neurons: hand-computed traces ---------------------------------------------------------------------------------


def test_if_integrates_and_resets_to_zero():
    # v: 0.4, 0.8, 1.2 -> spike, reset to 0; period 3.
    g = graph_of(("n", nir.IF(r=one(1), v_threshold=one(1))))
    assert spike_steps(trace(g, [[0.4]], "n", steps=9)) == [2, 5, 8]


def test_if_threshold_is_strict():
    # v: 0.5, 1.0 (not > 1), 1.5 -> spike.
    g = graph_of(("n", nir.IF(r=one(1), v_threshold=one(1))))
    assert spike_steps(trace(g, [[0.5]], "n", steps=6)) == [2, 5]


def test_if_reset_potential_and_resistance():
    # r = 2: v += 0.6 per step; reset to 0.5: v 0.6, 1.2 s -> 0.5, 1.1 s -> 0.5, 1.1 s ...
    g = graph_of(("n", nir.IF(r=one(2), v_threshold=one(1), v_reset=one(0.5))))
    assert spike_steps(trace(g, [[0.3]], "n", steps=5)) == [1, 2, 3, 4]


def test_if_reset_by_subtraction():
    # v: .7, 1.4 s->.4, 1.1 s->.1, .8, 1.5 s->.5, 1.2 s->.2, .9, 1.6 s
    neuron = nir.IF(r=one(1), v_threshold=one(1), metadata={"reset": "subtract"})
    g = graph_of(("n", neuron))
    assert spike_steps(trace(g, [[0.7]], "n", steps=8)) == [1, 2, 4, 5, 7]


def test_norse_lif_fixture_at_dt_1e4():
    # tau = 2.5 ms, dt = 0.1 ms: v_k = 1 - 0.96**(k+1) for input 1; threshold 0.1 is crossed at k = 2
    # (1 - 0.96**3 = 0.1153), then v resets to 0 and the pattern repeats.
    g = snn2chip.load(NORSE)
    assert spike_steps(trace(g, [[1.0]], "1", steps=9, dt=1e-4)) == [2, 5, 8]


def test_li_and_i_closed_forms():
    steps, lam, r, x = 6, 0.25, 2.0, 1.5
    li = graph_of(("n", nir.LI(tau=one(1 / lam), r=one(r), v_leak=one(0.5))))
    k = np.arange(1, steps + 1)
    expected = (0.5 + r * x) * (1 - (1 - lam) ** k)  # from 0 towards v_leak + r*x, geometrically
    np.testing.assert_allclose(trace(li, [[x]], "n", steps=steps)[:, 0], expected, rtol=1e-12)
    integrator = graph_of(("n", nir.I(r=one(r))), metadata={"dt": 0.5})
    np.testing.assert_allclose(trace(integrator, [[x]], "n", steps=steps)[:, 0], 0.5 * r * x * k, rtol=1e-12)


def _cuba_by_hand(x, dt, tau_syn, tau_mem, r, w_in, v_leak, v_th=None):
    """Scalar forward-Euler loop written from NIR's CubaLIF equations."""
    i = v = 0.0
    out = []
    for xt in x:
        i = i + dt / tau_syn * (-i + w_in * xt)
        v = v + dt / tau_mem * (v_leak - v + r * i)
        if v_th is not None and v > v_th:
            out.append(1.0)
            v = 0.0
        else:
            out.append(v if v_th is None else 0.0)
    return np.array(out)


def test_cuba_neurons_match_scalar_loop():
    rng = np.random.default_rng(1)
    x = rng.random(40) * 2
    params = dict(dt=1e-4, tau_syn=2.5e-4, tau_mem=1e-3, r=10.0, w_in=2.5, v_leak=0.1)
    lif = nir.CubaLIF(tau_syn=one(2.5e-4), tau_mem=one(1e-3), r=one(10), v_leak=one(0.1), v_threshold=one(1), w_in=one(2.5))
    li = nir.CubaLI(tau_syn=one(2.5e-4), tau_mem=one(1e-3), r=one(10), v_leak=one(0.1), w_in=one(2.5))
    got_s = trace(graph_of(("n", lif)), x[None, :, None], "n", dt=1e-4)[:, 0]
    got_v = trace(graph_of(("n", li)), x[None, :, None], "n", dt=1e-4)[:, 0]
    expected_s = _cuba_by_hand(x, v_th=1.0, **params)
    assert expected_s.sum() >= 5
    np.testing.assert_array_equal(got_s, expected_s)
    np.testing.assert_allclose(got_v, _cuba_by_hand(x, **params), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    tau=st.floats(1.0, 50.0),
    v_leak=st.floats(-1.0, 1.0),
    r=st.floats(0.1, 5.0),
    threshold=st.floats(0.2, 3.0),
    seed=st.integers(0, 2**16),
)
def test_lif_matches_scalar_loop(tau, v_leak, r, threshold, seed):
    x = np.random.default_rng(seed).normal(0.5, 1.0, 30)
    g = graph_of(("n", nir.LIF(tau=one(tau), r=one(r), v_leak=one(v_leak), v_threshold=one(threshold))))
    v, expected = 0.0, []
    for xt in x:
        v = v + (v_leak - v + r * xt) / tau
        expected.append(float(v > threshold))
        v = 0.0 if v > threshold else v
    np.testing.assert_array_equal(trace(g, x[None, :, None], "n")[:, 0], expected)


def test_threshold_is_strict():
    g = graph_of(("t", nir.Threshold(threshold=arr(0.5, 1.0, 1.5))), shape=(3,))
    np.testing.assert_array_equal(trace(g, [[1.0, 1.0, 1.0]], "t", steps=1)[0], [1, 0, 0])


def test_delay_per_element_whole_steps():
    g = graph_of(("d", nir.Delay(delay=arr(0.0, 0.5, 1.5))), shape=(3,), metadata={"dt": 0.5})
    x = np.arange(1, 7, dtype=np.float64)[:, None] * np.ones(3)  # x[t] = t + 1 on all three
    got = trace(g, x[None], "d")
    np.testing.assert_array_equal(got[:, 0], [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(got[:, 1], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(got[:, 2], [0, 0, 0, 1, 2, 3])


def test_delay_that_is_not_whole_steps_is_rejected():
    g = graph_of(("d", nir.Delay(delay=one(0.25))))
    with pytest.raises(ModelError) as info:
        snn2chip.run(g, np.ones((1, 1)), 2, dt=0.1)
    assert str(info.value) == (
        "<memory>: node 'd': delay [0.25] is not a whole, non-negative number of dt = 0.1 steps: "
        "discrete-time hardware delays by whole steps only"
    )


def test_unstable_dt_is_rejected_with_hint():
    g = snn2chip.load(NORSE)
    with pytest.raises(ModelError) as info:
        snn2chip.run(g, np.ones((1, 1)), 2)
    assert str(info.value) == (
        f"{NORSE}: node '1': dt/tau = 400 > 1 at dt = 1: forward Euler overshoots; "
        "the time constants look like seconds, pass the exporter's dt (e.g. --dt 1e-4)"
    )


# --- graph semantics: joins, recurrence, time ---------------------------------------------------------------------


def test_joins_are_summed_in_the_same_step():
    nodes, edges = chain(("a", nir.Scale(scale=one(2))), ("b", nir.Scale(scale=one(10))), shape=(1,))
    nodes["c"] = nir.Scale(scale=one(3))
    edges += [("input", "c"), ("c", "b")]  # b <- a + c = 5x, same step
    np.testing.assert_array_equal(trace(make_graph(nodes, edges), [[[1.0], [2.0]]], "b")[:, 0], [50, 100])


def test_recurrent_edge_reads_previous_step():
    # One input pulse of 1.5 at t=0 makes the IF neuron spike. With recurrent weight 1.5 each spike re-excites
    # it one step later, so it spikes at every step; with weight 0.6 it receives 0.6 at t=1 only (v = 0.6 < 1).
    for w, expected in ((1.5, [0, 1, 2, 3, 4]), (0.6, [0])):
        nodes, edges = chain(("n", nir.IF(r=one(1), v_threshold=one(1))), shape=(1,))
        nodes["rec"] = nir.Linear(weight=np.array([[w]]))
        edges += [("n", "rec"), ("rec", "n")]
        g = make_graph(nodes, edges)
        assert g.recurrent == {("rec", "n")}
        x = np.zeros((1, 5, 1))
        x[0, 0] = 1.5
        assert spike_steps(trace(g, x, "n")) == expected
        if w == 0.6:
            np.testing.assert_array_equal(trace(g, x, "rec")[:, 0], [0.6, 0, 0, 0, 0])


def test_time_series_and_constant_inputs_agree():
    g = graph_of(("n", nir.IF(r=one(1), v_threshold=one(1))))
    constant = snn2chip.run(g, np.full((2, 1), 0.4), 7, record=["n"])["n"]
    series = snn2chip.run(g, np.full((2, 7, 1), 0.4), record=["n"])["n"]
    np.testing.assert_array_equal(constant, series)
    assert constant.shape == (2, 7, 1)


def test_batch_chunks_do_not_change_results():
    g = snn2chip.load(SINABS)
    x = (np.random.default_rng(0).random((10, 6, 2, 34, 34)) < 0.2).astype(np.float32)
    whole = snn2chip.run(g, x, record=["3", "12"])
    chunked = snn2chip.run(g, x, record=["3", "12"], batch_size=3)
    for name in whole:
        np.testing.assert_array_equal(whole[name], chunked[name])
    assert whole["3"].sum() > 0


def test_bad_input_shape_is_reported():
    g = snn2chip.load(SINABS)
    with pytest.raises(ModelError) as info:
        snn2chip.run(g, np.zeros((4, 34, 34)), 3)
    assert str(info.value) == (
        f"{SINABS}: node 'input': input has shape (4, 34, 34); expected (batch, 2x34x34) "
        "or (batch, time, 2x34x34) with shape 2x34x34"
    )


def test_unknown_record_node():
    g = graph_of(("n", nir.Scale(scale=one(1))))
    with pytest.raises(ModelError, match="cannot record node 'nope': no such node"):
        snn2chip.run(g, np.ones((1, 1)), 1, record=["nope"])


# --- stateless operators against torch ----------------------------------------------------------------------------


def test_conv_pool_flatten_affine_match_torch():
    rng = np.random.default_rng(3)
    conv = nir.Conv2d(input_shape=(9, 9), weight=rng.normal(size=(4, 1, 3, 3)), stride=(2, 1), padding=(1, 2),
                      dilation=(1, 2), groups=2, bias=rng.normal(size=4))
    conv1 = nir.Conv1d(input_shape=7, weight=rng.normal(size=(3, 2, 2)), stride=2, padding=1, dilation=1, groups=1,
                       bias=rng.normal(size=3))
    x = rng.normal(size=(3, 2, 9, 9))
    g2 = graph_of(("conv", conv), ("sum", nir.SumPool2d(kernel_size=2, stride=2, padding=1)),
                  ("avg", nir.AvgPool2d(kernel_size=(2, 1), stride=1, padding=0)),
                  ("flat", nir.Flatten(input_type={"input": np.array([4, 2, 5])}, start_dim=1, end_dim=2)),
                  shape=(2, 9, 9), out=(4, 10))
    out = snn2chip.run(g2, x, 1, dtype=F64)
    t = torch.as_tensor(x)
    y = F.conv2d(t, torch.as_tensor(conv.weight), torch.as_tensor(conv.bias), stride=(2, 1), padding=(1, 2),
                 dilation=(1, 2), groups=2)
    np.testing.assert_allclose(out["conv"][:, 0], y.numpy(), rtol=1e-12)
    summed = F.avg_pool2d(y, 2, 2, 1) * 4  # count_include_pad: zero padding counts in the window
    np.testing.assert_allclose(out["sum"][:, 0], summed.numpy(), rtol=1e-12)
    averaged = F.avg_pool2d(summed, (2, 1), 1)
    np.testing.assert_allclose(out["avg"][:, 0], averaged.numpy(), rtol=1e-12)
    assert out["conv"].shape == (3, 1, 4, 5, 9) and out["sum"].shape == (3, 1, 4, 3, 5)
    assert out["flat"].shape == (3, 1, 4, 10)
    np.testing.assert_array_equal(out["flat"][:, 0], out["avg"][:, 0].reshape(3, 4, 10))

    g1 = graph_of(("c", conv1), ("fc", nir.Affine(weight=rng.normal(size=(5, 4)), bias=rng.normal(size=5))),
                  shape=(2, 7), out=(3, 5))
    x1 = rng.normal(size=(2, 2, 7))
    out1 = snn2chip.run(g1, x1, 1, dtype=F64)
    y1 = F.conv1d(torch.as_tensor(x1), torch.as_tensor(conv1.weight), torch.as_tensor(conv1.bias), stride=2, padding=1)
    np.testing.assert_allclose(out1["c"][:, 0], y1.numpy(), rtol=1e-12)
    fc = g1.nodes["fc"]
    np.testing.assert_allclose(out1["fc"][:, 0], y1.numpy() @ fc.weight.T + fc.bias, rtol=1e-12)


def test_sinabs_cnn_runs_hundreds_of_samples():
    g = snn2chip.load(SINABS)
    x = (np.random.default_rng(0).random((200, 10, 2, 34, 34)) < 0.15).astype(np.float32)
    out = snn2chip.run(g, x, record=["output"], batch_size=100)["output"]
    assert out.shape == (200, 10, 10)
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert math.isclose(out.sum(), out.sum().round()) and out.sum() > 0
