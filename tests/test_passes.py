"""The compiler passes one by one (snn2chip/passes/), and the target facts they read."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest

from snn2chip import compiler
from snn2chip.chip import targets
from snn2chip.chip.ir import Population
from snn2chip.errors import ModelError
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import align, bias, context, scales, weights
from snn2chip.passes.quantize import Capabilities, Options, compile_graph
from tests.conftest import chain

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"


def residual_graph():
    """input -> a (IF) -> b (IF) -> c (IF, reads b and a): a one-hop shortcut around b."""
    eye = np.eye(4)
    nodes, edges = chain(("a", nir.IF(r=np.ones(4), v_threshold=np.ones(4))), ("fa", nir.Linear(weight=eye)),
                         ("b", nir.IF(r=np.ones(4), v_threshold=np.ones(4))), ("fb", nir.Linear(weight=eye)),
                         ("c", nir.IF(r=np.ones(4), v_threshold=np.ones(4))))
    nodes["skip"] = nir.Linear(weight=2 * eye)
    return make_graph(nodes, edges + [("a", "skip"), ("skip", "c")])


def test_capabilities_come_from_the_target_file():
    loihi1, loihi2 = (Capabilities.of(targets.resolve(name)) for name in ("loihi1", "loihi2"))
    assert (loihi2.max_delay, loihi2.payload_bits, loihi2.weight_bits) == (63, 24, 8)
    assert loihi1.payload_bits == 0 and loihi1.max_delay == targets.resolve("loihi1").max_delay
    assert loihi2.strategies == ("expand", "relay") and loihi1.strategies == ("expand",)


def test_auto_strategy_chooses_among_what_the_target_carries():
    _, net, report = compiler.compile_file(ZOO / "sew_add.nir", "loihi1", Options(strategy="auto", steps=4))
    assert report["strategy"] == "expand" and set(report["strategy_costs"]) == {"expand"}
    assert all(p.payload_bits == 0 for p in net.populations.values())
    _, _, report = compiler.compile_file(ZOO / "sew_add.nir", "loihi2", Options(strategy="auto", steps=4))
    assert set(report["strategy_costs"]) == {"expand", "relay"}


def test_alignment_waits_in_synaptic_delays_up_to_the_targets_limit():
    ctx = context.make(residual_graph(), Options(), Capabilities())
    net, report = compile_graph(residual_graph())
    c = next(layer for layer in report["layers"] if layer["population"] == "c")
    assert c["delayed"] == [{"source": "a", "steps": 1, "by": "synaptic delay"}]
    assert net.depth["c"] == 3 and "a@1" not in net.populations
    no_delays = Capabilities(max_delay=0)
    net, report = compile_graph(residual_graph(), caps=no_delays)
    c = next(layer for layer in report["layers"] if layer["population"] == "c")
    assert c["delayed"] == [{"source": "a", "steps": 1, "by": "delay line"}] and "a@1" in net.populations
    depth = {"input": 0, "a": 1, "b": 2}
    built = {name: Population(name, "lif", (4,)) for name in depth}
    timing = align.align(ctx, align.incoming_paths(ctx, "c"), depth, built)
    assert (timing.depth, timing.hops) == (3, (2, 3))
    assert [w.lag for w in timing.waits] == sorted(w.lag for w in timing.waits) == [0, 1]


def test_delay_line_adds_only_the_missing_copies():
    src = Population("s", "lif", (3,), vth=1)
    last, pops, groups, depths = align.delay_line(src, 3, 5, {"s", "s@1"})
    assert last == "s@3" and [p.name for p in pops] == ["s@2", "s@3"] and depths == {"s@2": 7, "s@3": 8}
    assert [g.name for g in groups] == ["s@2<-s@1", "s@3<-s@2"]
    assert all(p.kind == "lif" and (p.du, p.dv, p.vth) == (4095, 4095, 0) for p in pops)


def test_scale_is_the_largest_power_of_two_within_the_input_range():
    n = scales.Neuron(decay=1.0, syn_decay=None, gain=1.0, theta=1.0, leak_bias=np.zeros(1))
    alpha, guaranteed = scales.choose_scale(n, pos=3.0, neg=0.0, steps=10, weight=0.01, relay_max=2**23 - 1)
    assert (alpha, guaranteed) == (2.0**14, 1.0)  # v before a spike: (2**17 - 1) / (1 + 3) = 32767.75 < 2**15
    clamp, fraction = scales.choose_scale(n, pos=1e9, neg=0.0, steps=10, weight=1.0, relay_max=2**23 - 1)
    assert clamp == 64 and 0 < fraction < 1  # range clamp: vth stays at 64


def test_bias_mantissa_and_reserved_name():
    mant, exp, recon = bias.mantissa(np.array([8190.0, -3.0]))
    assert (exp, mant.tolist(), recon.tolist()) == (1, [4095, -2], [8190.0, -4.0])
    with pytest.raises(ModelError, match="exceeds 13-bit mantissa << 7"):
        bias.mantissa(np.array([4096.0 * 2**8]))


def test_weights_split_by_sign_and_use_the_full_mantissa():
    target = np.array([[100.0, -50.0], [0.0, 25.0]])
    parts = weights.sign_parts(target, split=True)
    assert [s for s, _ in parts] == ["+", "-"]
    groups = list(weights.quantize(target, False, True, 8, "g", residual_graph(), "c"))
    assert [(s, exp) for s, _, _, exp, _ in groups] == [("+", -1), ("-", -2)]
    assert groups[0][2].max() == 200 and groups[1][2].min() == -200
    assert weights.unique("x", {"x", "x#1"}) == "x#2"


def test_unknown_rounding_is_refused():
    with pytest.raises(ModelError, match="unknown rounding 'fancy'"):
        context.make(make_graph(*chain(("n", nir.IF(r=np.ones(4), v_threshold=np.ones(4))))), Options(rounding="fancy"),
                     Capabilities())
