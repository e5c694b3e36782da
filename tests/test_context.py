"""snn2chip/passes/context.py: the target's capabilities (from target files), the shortcut
strategies a target can carry, option validation and what a :class:`Context` fixes (time step,
populations, lowered graph, calibration outputs)."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from snn2chip.chip import targets
from snn2chip.errors import ModelError
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import context, shortcuts
from snn2chip.passes.context import Capabilities, Options
from tests.conftest import chain

TARGET = """
name = "tiny"
description = "a made-up chip"
[chip]
cores = 4
[core]
neurons = 64
synaptic_memory_bits = 4096
fan_in_axons = 64
fan_out_axons = 64
synapse_bits = 12
shared_conv_kernels = false
kernel_entry_bits = 8
[limits]
weight_bits = {weight_bits}
payload_bits = {payload_bits}
max_delay = {max_delay}
[systems]
chip = 1
"""


def if_neurons(n: int = 2, threshold: float = 1.0) -> nir.IF:
    return nir.IF(r=np.ones(n), v_threshold=np.full(n, threshold))


def two_layer_graph(metadata=None):
    """input (2) -> a (IF) -> fc (Linear) -> b (IF) -> output."""
    nodes, edges = chain(("a", if_neurons()), ("fc", nir.Linear(weight=np.eye(2))), ("b", if_neurons()), shape=(2,))
    return make_graph(nodes, edges, metadata)


def sew_add_graph():
    """input -> a (IF) -> fa -> b (IF); fc reads a + b (a spike join before a stateless node) -> c (IF)."""
    nodes, edges = chain(("a", if_neurons()), ("fa", nir.Linear(weight=np.eye(2))), ("b", if_neurons()),
                         ("fc", nir.Linear(weight=np.eye(2))), ("c", if_neurons()), shape=(2,))
    return make_graph(nodes, edges + [("a", "fc")])


def test_capabilities_come_from_the_target_file():  # moved from tests/test_passes.py
    loihi1, loihi2 = (Capabilities.of(targets.resolve(name)) for name in ("loihi1", "loihi2"))
    assert (loihi2.max_delay, loihi2.payload_bits, loihi2.weight_bits) == (63, 24, 8)
    assert loihi1.payload_bits == 0 and loihi1.max_delay == targets.resolve("loihi1").max_delay
    assert loihi2.strategies == ("expand", "relay") and loihi1.strategies == ("expand",)


def test_capabilities_of_a_custom_target_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TARGET.format(weight_bits=6, payload_bits=16, max_delay=5))
    assert Capabilities.of(targets.resolve(path)) == Capabilities(
        max_delay=5, payload_bits=16, weight_bits=6, core_neurons=64, core_memory_bits=4096, synapse_bits=12,
        shared_conv_kernels=False)
    assert Capabilities.of(targets.resolve("loihi1")) == Capabilities(
        max_delay=62, payload_bits=0, weight_bits=8, core_neurons=1024, core_memory_bits=1048576, synapse_bits=18,
        shared_conv_kernels=False)
    assert Capabilities() == Capabilities.of(targets.resolve("loihi2"))  # the defaults: Loihi 2


def test_strategies_and_relay_width_follow_the_payload():
    binary, graded = Capabilities(payload_bits=0), Capabilities(payload_bits=16)
    assert binary.strategies == ("expand",) and graded.strategies == ("expand", "relay")
    assert graded.relay_bits == 16
    assert binary.relay_bits == context.RELAY_BITS == 24  # relays then get 24 bits (and the partitioner refuses them)


def test_unknown_rounding_is_refused():  # moved from tests/test_passes.py
    with pytest.raises(ModelError, match="unknown rounding 'fancy'"):
        context.make(make_graph(*chain(("n", nir.IF(r=np.ones(4), v_threshold=np.ones(4))))), Options(rounding="fancy"),
                     Capabilities())


def test_bad_options_are_refused_with_exact_messages():
    graph = two_layer_graph()
    with pytest.raises(ModelError) as e:
        context.make(graph, Options(rounding="fancy"), Capabilities())
    assert e.value.problem == "unknown rounding 'fancy' (known: compensated, nearest)"
    with pytest.raises(ModelError) as e:
        context.make(graph, Options(strategy="fancy"), Capabilities())
    assert e.value.problem == "unknown shortcut strategy 'fancy' (known: expand, relay)"
    assert str(e.value) == "<memory>: unknown shortcut strategy 'fancy' (known: expand, relay)"
    with pytest.raises(ModelError) as e:
        context.make(graph, Options(dt=-1.0), Capabilities())
    assert e.value.problem == "dt must be a positive number, got -1 (from option)"


def test_time_step_comes_from_the_option_else_the_metadata_else_one():
    assert context.make(two_layer_graph(), Options(), Capabilities()).dt == 1.0
    assert context.make(two_layer_graph({"dt": 0.25}), Options(), Capabilities()).dt == 0.25
    assert context.make(two_layer_graph({"dt": 0.25}), Options(dt=0.5), Capabilities()).dt == 0.5


def test_context_lists_populations_in_build_order():
    ctx = context.make(two_layer_graph(), Options(), Capabilities(max_delay=3))
    assert ctx.pops == {"input": "input", "a": "a", "b": "b"}
    assert ctx.caps.max_delay == 3 and ctx.options == Options()
    readout = make_graph(*chain(("a", if_neurons()), ("fc", nir.Linear(weight=np.eye(2))), shape=(2,)))
    assert context.make(readout, Options(), Capabilities()).pops == {"input": "input", "a": "a",
                                                                     "output.readout": "output"}


def test_context_graph_has_the_strategys_relays():
    graph = sew_add_graph()
    expand = context.make(graph, Options(strategy="expand"), Capabilities())
    assert expand.graph is graph and "b.sum0" not in expand.pops
    relay = context.make(graph, Options(strategy="relay"), Capabilities())
    assert shortcuts.is_relay(relay.graph.nodes["b.sum0"])
    assert list(relay.pops) == ["input", "a", "b", "b.sum0", "c"]
    assert relay.graph.predecessors("fc") == ["b.sum0"]


def test_calibration_runs_the_float_model_per_population():
    """IF with r = 1, threshold 1 on a constant input x: x = 1 fires at steps 1, 3 (mean 0.5);
    x = 0.5 reaches v = 1.5 at step 2 only (mean 0.25)."""
    no_calibration = context.make(two_layer_graph(), Options(), Capabilities())
    assert no_calibration.calibrated is None and no_calibration.means is None
    x = np.array([[1.0, 0.5]])
    ctx = context.make(two_layer_graph(), Options(calibration=x, steps=4), Capabilities())
    assert set(ctx.calibrated) == {"input", "a", "b"}
    assert ctx.calibrated["input"].shape == (1, 4, 2)
    np.testing.assert_array_equal(ctx.calibrated["input"][0], [[1.0, 0.5]] * 4)
    np.testing.assert_array_equal(ctx.calibrated["a"][0], [[0, 0], [1, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(ctx.means["a"], [0.5, 0.25])
    np.testing.assert_array_equal(ctx.means["input"], [1.0, 0.5])


def test_calibration_inputs_of_the_wrong_shape_name_the_option():
    with pytest.raises(ModelError) as e:
        context.make(two_layer_graph(), Options(calibration=np.zeros((3, 5))), Capabilities())
    assert (e.value.option, e.value.node) == ("--calib", "input")
    assert e.value.problem == ("calibration inputs: input has shape (3, 5); expected (batch, 2) or (batch, time, 2) "
                               "with shape 2")
