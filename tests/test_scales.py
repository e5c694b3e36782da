"""snn2chip/passes/scales.py: a population's uniform dynamics (:func:`neuron`) and its power-of-two
scale alpha (:func:`choose_scale`, :func:`population_scale`): the largest that keeps the input
per step and the membrane below 2**17, within the weight and threshold limits, range-clamped
where the worst case would hide the threshold; relays at the smallest scale that keeps their
inputs' mantissas full."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from snn2chip.chip.ir import Population
from snn2chip.errors import ModelError
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import align, context, scales, shortcuts
from snn2chip.passes.context import Capabilities, Options
from snn2chip.passes.scales import Neuron, Scale
from tests.conftest import chain

U = 2**17 - 1  # scales.U_LIMIT
RELAY_MAX = 2**23 - 1


def dynamics(n: Neuron) -> tuple:
    return n.decay, n.syn_decay, n.gain, n.theta, n.leak_bias.tolist(), n.memoryless, n.subtract, n.relay


def single(node, shape=(2,), dt: float = 1.0) -> Neuron:
    graph = make_graph(*chain(("n", node), shape=shape))
    return scales.neuron(graph, "n", dt)


def test_neuron_dynamics_of_each_node_type():
    assert dynamics(single(nir.IF(r=np.full(2, 2.0), v_threshold=np.full(2, 3.0)), dt=0.5)) == (
        1.0, None, 1.0, 3.0, [0.0, 0.0], False, False, False)
    lif = nir.LIF(tau=np.full(2, 4.0), r=np.full(2, 2.0), v_leak=np.ones(2), v_threshold=np.ones(2),
                  metadata={"reset": "subtract"})
    assert dynamics(single(lif)) == (0.75, None, 0.5, 1.0, [0.25, 0.25], False, True, False)
    cuba = nir.CubaLIF(tau_syn=np.full(2, 2.0), tau_mem=np.full(2, 4.0), r=np.ones(2), v_leak=np.zeros(2),
                       v_threshold=np.full(2, 0.5), w_in=np.full(2, 2.0))
    assert dynamics(single(cuba)) == (0.75, 0.5, 0.25, 0.5, [0.0, 0.0], False, False, False)  # 1/4 * (1/2 * 2)
    li = nir.LI(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2))
    assert dynamics(single(li)) == (0.5, None, 0.5, None, [0.0, 0.0], False, False, False)
    assert dynamics(single(nir.Threshold(threshold=np.full(2, 1.5)))) == (0.0, None, 1.0, 1.5, [0.0, 0.0], True, False,
                                                                           False)
    relay = nir.Scale(scale=np.ones(2), metadata={shortcuts.RELAY_KEY: True})
    assert dynamics(single(relay)) == (0.0, None, 1.0, None, [0.0, 0.0], False, False, True)


def test_neuron_refuses_what_one_lava_lif_cannot_hold():
    cases = [
        (nir.IF(r=np.ones(2), v_threshold=np.array([1.0, 2.0])),
         "per-neuron thresholds differ: Lava's LIF has one value per population"),
        (nir.LIF(tau=np.array([2.0, 3.0]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
         "per-neuron gains (r, tau) differ: Lava's LIF has one value per population"),
        (nir.LIF(tau=np.array([2.0, 4.0]), r=np.array([2.0, 4.0]), v_leak=np.zeros(2), v_threshold=np.ones(2)),
         "per-neuron time constants differ: Lava's LIF has one value per population"),
        (nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.full(2, 0.5)),
         "v_reset other than 0 cannot be represented: Loihi's LIF resets v to 0"),
    ]
    for node, message in cases:
        with pytest.raises(ModelError) as e:
            single(node)
        assert (e.value.problem, e.value.node) == (message, "n")


def spiking(theta: float = 1.0, syn_decay: float | None = None) -> Neuron:
    return Neuron(decay=1.0, syn_decay=syn_decay, gain=1.0, theta=theta, leak_bias=np.zeros(1))


def test_scale_is_the_largest_power_of_two_within_the_input_range():  # moved from tests/test_passes.py
    n = scales.Neuron(decay=1.0, syn_decay=None, gain=1.0, theta=1.0, leak_bias=np.zeros(1))
    alpha, guaranteed = scales.choose_scale(n, pos=3.0, neg=0.0, steps=10, weight=0.01, relay_max=2**23 - 1)
    assert (alpha, guaranteed) == (2.0**14, 1.0)  # v before a spike: (2**17 - 1) / (1 + 3) = 32767.75 < 2**15
    clamp, fraction = scales.choose_scale(n, pos=1e9, neg=0.0, steps=10, weight=1.0, relay_max=2**23 - 1)
    assert clamp == 64 and 0 < fraction < 1  # range clamp: vth stays at 64


def test_choose_scale_limits_one_by_one():
    # a synaptic current decaying by 1/2 doubles the input per step: U / (1 + 2 * 2) = 26214 -> 2**14 (without: 2**15)
    assert scales.choose_scale(spiking(), 2.0, 0.0, 10, 0.01, RELAY_MAX) == (2.0**15, 1.0)
    assert scales.choose_scale(spiking(syn_decay=0.5), 2.0, 0.0, 10, 0.01, RELAY_MAX) == (2.0**14, 1.0)
    # the larger of the two signs counts: U / (1 + 5) = 21845 -> 2**14
    assert scales.choose_scale(spiking(), 1.0, 5.0, 10, 0.01, RELAY_MAX) == (2.0**14, 1.0)
    # the largest weight must fit 254 << 7 = 32512: weight 1000 allows 32.5 -> 32
    assert scales.choose_scale(spiking(), 0.001, 0.0, 10, 1000.0, RELAY_MAX) == (32.0, 1.0)
    # the threshold must fit 17 bits: theta 5000 allows 131071 / 5000 = 26.2 -> 16
    assert scales.choose_scale(spiking(5000.0), 0.0, 0.0, 10, 0.0, RELAY_MAX) == (16.0, 1.0)
    # nothing limits it: 2**20
    assert scales.choose_scale(Neuron(1.0, None, 1.0, None, np.zeros(1)), 0.0, 0.0, 10, 0.0, RELAY_MAX) == (2.0**20, 1.0)


def test_choose_scale_of_read_outs_relays_and_threshold_nodes():
    integrator = Neuron(decay=1.0, syn_decay=None, gain=1.0, theta=None, leak_bias=np.zeros(1))
    assert scales.choose_scale(integrator, 1.0, 0.0, 100, 0.01, RELAY_MAX) == (1024.0, 1.0)  # U / (1 * 100 steps)
    leaky = Neuron(decay=0.75, syn_decay=None, gain=1.0, theta=None, leak_bias=np.zeros(1))
    assert scales.choose_scale(leaky, 8.0, 0.0, 100, 0.01, RELAY_MAX) == (2048.0, 1.0)  # U / (8 * 1/(1 - 0.75))
    relay = Neuron(decay=0.0, syn_decay=None, gain=1.0, theta=None, leak_bias=np.zeros(1), relay=True)
    assert scales.choose_scale(relay, 1000.0, 0.0, 100, 0.01, 2**15 - 1) == (32.0, 1.0)  # a 16-bit payload: 32767 / 1000
    # a Threshold node keeps |a_in| <= 63: 63 / 0.5 = 126 -> 64 (vth = floor(64 * 1.5) = 96 >= 64: no clamp)
    logic = Neuron(decay=0.0, syn_decay=None, gain=1.0, theta=1.5, leak_bias=np.zeros(1), memoryless=True)
    assert scales.choose_scale(logic, 0.5, 0.0, 100, 1.0, RELAY_MAX) == (64.0, 1.0)


def test_range_clamp_keeps_the_threshold_at_64_chip_units():
    """theta 0.5: the worst case 1e6 would allow alpha 2**-3; the clamp takes 2**7 (vth = 64) and
    reports the fraction of the worst case that alpha still guarantees."""
    alpha, fraction = scales.choose_scale(spiking(0.5), 1e6, 0.0, 10, 1.0, RELAY_MAX)
    assert alpha == 128.0 and fraction == (U / (0.5 + 1e6)) / 128
    # ... as far as the weight limit allows: weight 1000 allows only 32
    assert scales.choose_scale(spiking(0.5), 1e6, 0.0, 10, 1000.0, RELAY_MAX) == (32.0, (U / (0.5 + 1e6)) / 32)


def test_power_below():
    assert [scales.power_below(b) for b in (1000.0, 1024.0, 0.3, 1.0)] == [512.0, 1024.0, 0.25, 1.0]


def fc_context(weights, options: Options = Options(), caps: Capabilities = Capabilities()):
    """input -> fc (Linear ``weights``) -> n (IF, threshold 1): the context, n's dynamics and incoming maps."""
    weights = np.asarray(weights, dtype=np.float64)
    out, n_in = weights.shape
    graph = make_graph(*chain(("fc", nir.Linear(weight=weights)), ("n", nir.IF(r=np.ones(out), v_threshold=np.ones(out))),
                              shape=(n_in,), out=(out,)))
    ctx = context.make(graph, options, caps)
    return ctx, scales.neuron(ctx.graph, "n", ctx.dt), align.incoming_paths(ctx, "n")


def built_inputs(ctx) -> dict[str, Population]:
    return {"input": Population("input", "input", ctx.graph.out_shapes["input"], payload_bits=ctx.options.input_bits,
                                input_scale=ctx.options.input_scale)}


def test_population_scale_from_the_worst_spike_input():
    """Row 0 receives 8 spikes x 0.5 = 4 at most: U / (1 + 4) = 26214 -> 2**14; row 1 at most
    1 up or 2 down."""
    ctx, n, incoming = fc_context([[0.5] * 8, [-0.5] * 4 + [0.25] * 4])
    zero = np.zeros(2)
    assert scales.population_scale(ctx, "n", n, incoming, zero, built_inputs(ctx), {}) == Scale(2.0**14, 1.0, 4.0)
    # a constant input of 4 adds to the worst case (U / 9 = 14563) and is itself a weight
    # (from the always-on neuron): 32512 / 4 = 8128 -> 2**12
    constant = np.array([4.0, 0.0])
    assert scales.population_scale(ctx, "n", n, incoming, constant, built_inputs(ctx), {}) == Scale(2.0**12, 1.0, 8.0)


def test_population_scale_of_graded_inputs():
    """8-bit inputs at input scale 2 reach 127 / 2 = 63.5 of either sign: 0.75 * 63.5 = 47.625 per
    step, U / 48.625 = 2695 -> 2**11."""
    ctx, n, incoming = fc_context([[0.5, -0.25]], Options(input_bits=8, input_scale=2.0))
    assert scales.input_range(ctx, "input", {}) == (63.5, True)
    assert scales.input_scale(ctx, "input", built_inputs(ctx)) == 2.0
    got = scales.population_scale(ctx, "n", n, incoming, np.zeros(1), built_inputs(ctx), {})
    assert got == Scale(2.0**11, 1.0, 47.625)


def test_population_scale_is_range_clamped():
    """8 spikes x 300 = 2400 per step would allow U / 2401 = 54.6 -> 32, giving vth 32 < 64."""
    ctx, n, incoming = fc_context([[300.0] * 8])
    got = scales.population_scale(ctx, "n", n, incoming, np.zeros(1), built_inputs(ctx), {})
    assert got == Scale(64.0, (U / 2401) / 64, 2400.0)


def relay_context(options: Options = Options(strategy="relay")):
    """SEW ADD: fc reads the relay b.sum0 = a + b, then c (IF) with weights 0.5."""
    neuron = lambda: nir.IF(r=np.ones(2), v_threshold=np.ones(2))  # noqa: E731
    nodes, edges = chain(("a", neuron()), ("fa", nir.Linear(weight=np.eye(2))), ("b", neuron()),
                         ("fc", nir.Linear(weight=0.5 * np.eye(2))), ("c", neuron()), shape=(2,))
    return context.make(make_graph(nodes, edges + [("a", "fc")]), options, Capabilities())


def test_a_spike_relay_carries_the_count_at_scale_one():
    """b.sum0 = a + b: integer weights on spikes need no more than alpha 1; it carries at most 2."""
    ctx = relay_context()
    relay = "b.sum0"
    n = scales.neuron(ctx.graph, relay, ctx.dt)
    built = {name: Population(name, "lif", (2,)) for name in ("a", "b")}
    assert scales.population_scale(ctx, relay, n, align.incoming_paths(ctx, relay), np.zeros(2), built, {}) == \
        Scale(1.0, 1.0, 2.0, 2.0)
    # its consumer reads up to 2 of either sign through 0.5: 1 per step, U / 2 -> 2**15
    built[relay] = Population(relay, "relay", (2,), payload_bits=24, scale=1.0, role="relay")
    assert scales.input_range(ctx, relay, {relay: 2.0}) == (2.0, True)
    n = scales.neuron(ctx.graph, "c", ctx.dt)
    assert scales.population_scale(ctx, "c", n, align.incoming_paths(ctx, "c"), np.zeros(2), built, {relay: 2.0}) == \
        Scale(2.0**15, 1.0, 1.0)


def test_a_stream_relay_scale_keeps_its_input_mantissas_full():
    """MS block: x1 = fc(sn) + x0 with x0 = stem(input): weights 0.75 and 0.5 need alpha >= 254 / 0.5
    = 508 -> 512, well below what the range allows; it carries at most 0.75 + 0.5."""
    lif = nir.LIF(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.full(2, 0.5))
    nodes = {"input": nir.Input(input_type={"input": np.array([2])}), "stem": nir.Linear(weight=0.5 * np.eye(2)),
             "x0": nir.Scale(scale=np.ones(2)), "sn": lif, "fc": nir.Linear(weight=0.75 * np.eye(2)),
             "x1": nir.Scale(scale=np.ones(2)), "sn2": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    edges = [("input", "stem"), ("stem", "x0"), ("x0", "sn"), ("sn", "fc"), ("fc", "x1"), ("x0", "x1"), ("x1", "sn2"),
             ("sn2", "output")]
    ctx = context.make(make_graph(nodes, edges), Options(strategy="relay"), Capabilities())
    n = scales.neuron(ctx.graph, "x1", ctx.dt)
    built = {"input": Population("input", "input", (2,)), "sn": Population("sn", "lif", (2,))}
    got = scales.population_scale(ctx, "x1", n, align.incoming_paths(ctx, "x1"), np.zeros(2), built, {})
    assert got == Scale(512.0, 1.0, 1.25, 1.25)
    # 16-bit inputs at scale 4096 (up to 8.0) through 0.5, 12-bit relays: the range allows
    # 2047 / (0.5 * 8.0 + 0.75) = 431 -> 256, where the stem's weight would be 0.5 * 256 / 4096 =
    # 1/32 chip unit; the range clamp keeps it at 1/16: scale 512, half the worst case guaranteed
    ctx = context.make(make_graph(nodes, edges), Options(strategy="relay", input_bits=16, input_scale=4096),
                       Capabilities(payload_bits=12))
    built["input"] = Population("input", "input", (2,), payload_bits=16, input_scale=4096)
    got = scales.population_scale(ctx, "x1", n, align.incoming_paths(ctx, "x1"), np.zeros(2), built, {})
    assert got == Scale(512.0, 0.5, 0.5 * 32767 / 4096 + 0.75, 2047 / 512)


def test_relay_limit_follows_the_payload_width():
    assert scales.relay_limit(relay_context()) == RELAY_MAX
    narrow = context.make(relay_context().graph, Options(), Capabilities(payload_bits=12))
    assert scales.relay_limit(narrow) == 2**11 - 1
    binary = context.make(relay_context().graph, Options(), Capabilities(payload_bits=0))
    assert scales.relay_limit(binary) == RELAY_MAX  # context.RELAY_BITS
