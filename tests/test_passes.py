"""The compiler passes as seen in the compile report (each pass on its own: tests/test_<pass>.py)."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest

from snn2chip import compiler
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import align, context
from snn2chip.chip.totals import totals
from snn2chip.passes.quantize import Capabilities, Options, OverBudget, compile_graph
from snn2chip.passes.reports import Delayed
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


def test_auto_strategy_chooses_among_what_the_target_carries():
    _, net, report = compiler.compile_file(ZOO / "sew_add.nir", "loihi1", Options(strategy="auto", steps=4))
    assert report.quantization.strategy == "expand" and set(report.quantization.strategy_costs) == {"expand"}
    assert all(p.payload_bits == 0 for p in net.populations.values())
    _, net, report = compiler.compile_file(ZOO / "sew_add.nir", "loihi2", Options(strategy="auto", steps=4))
    relay_bytes = totals(net).weight_memory_bytes
    # relays first; expand is abandoned once it passes their weight memory
    assert report.quantization.strategy == "relay" and report.quantization.strategy_costs == {
        "relay": {"weight_memory_bytes": relay_bytes}, "expand": {"weight_memory_bytes_above": relay_bytes}}
    expand, _ = compile_graph(compiler.frontend.load(ZOO / "sew_add.nir"), Options(strategy="expand", steps=4))
    assert totals(expand).weight_memory_bytes > relay_bytes


def test_a_compile_over_its_weight_budget_is_abandoned():
    net, _ = compile_graph(residual_graph())
    assert compile_graph(residual_graph(), budget=totals(net).weight_memory_bytes)[0] == net
    with pytest.raises(OverBudget) as e:
        compile_graph(residual_graph(), budget=totals(net).weight_memory_bytes - 1)
    assert str(e.value) == f"weight memory above {totals(net).weight_memory_bytes - 1:,} bytes"


def test_alignment_waits_in_synaptic_delays_up_to_the_targets_limit():
    ctx = context.make(residual_graph(), Options(), Capabilities())
    net, report = compile_graph(residual_graph())
    assert report.layer("c").delayed == (Delayed("a", 1, "synaptic delay"),)
    assert net.depth["c"] == 3 and "a@1" not in net.populations
    no_delays = Capabilities(max_delay=0)
    net, report = compile_graph(residual_graph(), caps=no_delays)
    assert report.layer("c").delayed == (Delayed("a", 1, "delay line"),) and "a@1" in net.populations
    timing = align.align(ctx, align.incoming_paths(ctx, "c"), {"input": 0, "a": 1, "b": 2})
    assert (timing.depth, timing.hops) == (3, (2, 3))
    assert [w.lag for w in timing.waits] == sorted(w.lag for w in timing.waits) == [0, 1]


def test_a_conv_needing_a_negative_exponent_keeps_it():
    """A graded input at scale 1024 into a neuron at scale 1024: kernel weights 0.3 are 0.3 chip
    units, which a conv at exponent 0 rounds to nothing. The conv keeps exponent -8 and mantissas
    77 (77 / 256 = 0.3008)."""
    kernel = np.full((2, 1, 3, 3), 0.3)
    nodes, edges = chain(("conv", nir.Conv2d((4, 4), kernel, 1, 1, 1, 1, np.zeros(2))),
                         ("n", nir.IF(r=np.ones((2, 4, 4)), v_threshold=np.ones((2, 4, 4)))), shape=(1, 4, 4), out=(2, 4, 4))
    net, report = compile_graph(make_graph(nodes, edges), Options(input_bits=16, input_scale=1024, steps=4))
    (group,) = [g for g in net.groups if g.dst == "n"]
    assert net.populations["n"].scale == 1024
    assert (group.kind, group.weight_exp, group.weights.tolist()) == ("conv", -8, np.full((2, 1, 3, 3), 77).tolist())
    (entry,) = report.layer("n").groups
    assert (entry.kind, entry.weight_exp) == ("conv", -8) and entry.weight_rel_rms_error < 0.003
