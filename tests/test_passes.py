"""The compiler passes as seen in the compile report (each pass on its own: tests/test_<pass>.py)."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from snn2chip import compiler
from snn2chip.chip.ir import Population
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import align, context
from snn2chip.passes.quantize import Capabilities, Options, compile_graph
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
    _, _, report = compiler.compile_file(ZOO / "sew_add.nir", "loihi2", Options(strategy="auto", steps=4))
    assert set(report.quantization.strategy_costs) == {"expand", "relay"}


def test_alignment_waits_in_synaptic_delays_up_to_the_targets_limit():
    ctx = context.make(residual_graph(), Options(), Capabilities())
    net, report = compile_graph(residual_graph())
    assert report.layer("c").delayed == (Delayed("a", 1, "synaptic delay"),)
    assert net.depth["c"] == 3 and "a@1" not in net.populations
    no_delays = Capabilities(max_delay=0)
    net, report = compile_graph(residual_graph(), caps=no_delays)
    assert report.layer("c").delayed == (Delayed("a", 1, "delay line"),) and "a@1" in net.populations
    depth = {"input": 0, "a": 1, "b": 2}
    built = {name: Population(name, "lif", (4,)) for name in depth}
    timing = align.align(ctx, align.incoming_paths(ctx, "c"), depth, built)
    assert (timing.depth, timing.hops) == (3, (2, 3))
    assert [w.lag for w in timing.waits] == sorted(w.lag for w in timing.waits) == [0, 1]
