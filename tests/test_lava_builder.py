"""The public Lava builder (:func:`snn2chip.lava.build`): a compiled zoo network inside a user's own
Lava application. The user's spike generator and recorder (their own processes and models, in their
own module) and a Lava monitor around the built network give the simulator's outputs bit for bit."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from models.data import test_set as digits_test
from snn2chip import compiler
from snn2chip import lava as snn2chip_lava
from snn2chip.backends.simulator import simulate
from snn2chip.errors import ModelError
from snn2chip.passes.quantize import Options

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
#: the digits image / 16 as graded payloads 0..16 (exact), held for 4 steps (the zoo's T)
OPTIONS = Options(input_bits=6, input_scale=16, steps=4, strategy="relay")

#: A user's own Lava module (written to a folder of its own: Lava looks for a process's models by
#: importing every module beside it). SpikeGenerator sends row t of ``data`` on step t (time first,
#: unlike io.source.RingBuffer); Recorder keeps what arrives on each step.
USER_IO = textwrap.dedent('''
    import numpy as np
    from lava.magma.core.decorator import implements, requires
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, OutPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.process.variable import Var
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


    class SpikeGenerator(AbstractProcess):
        def __init__(self, data):
            super().__init__()
            self.s_out = OutPort(shape=data.shape[1:])
            self.data = Var(shape=data.shape, init=data)


    @implements(proc=SpikeGenerator, protocol=LoihiProtocol)
    @requires(CPU)
    class PySpikeGenerator(PyLoihiProcessModel):
        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
        data: np.ndarray = LavaPyType(np.ndarray, np.int32)

        def run_spk(self):
            self.s_out.send(self.data[(self.time_step - 1) % len(self.data)])


    class Recorder(AbstractProcess):
        def __init__(self, shape, steps):
            super().__init__()
            self.a_in = InPort(shape=shape)
            self.data = Var(shape=(steps, *shape), init=0)


    @implements(proc=Recorder, protocol=LoihiProtocol)
    @requires(CPU)
    class PyRecorder(PyLoihiProcessModel):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
        data: np.ndarray = LavaPyType(np.ndarray, np.int32)

        def run_spk(self):
            self.data[self.time_step - 1] = self.a_in.recv()
''')


@pytest.fixture(scope="module")
def sew_add():
    """The zoo's SEW-ResNet ADD with relays: LIF and graded relay populations; Conv, Dense,
    DelayDense, Sparse and DelaySparse synapses."""
    return compiler.compile_file(ZOO / "sew_add.nir", options=OPTIONS)[1:]


@pytest.fixture
def user_io(tmp_path, monkeypatch):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "user_io.py").write_text(USER_IO)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "user_io", raising=False)
    return importlib.import_module("user_io")


def test_without_lava_the_builder_says_how_to_get_it(sew_add, monkeypatch):
    monkeypatch.setitem(sys.modules, "lava.magma.core.run_configs", None)  # as if Lava were not installed
    with pytest.raises(ModelError, match="^option --backend lava / --lava-samples: Lava is not installed: "):
        snn2chip_lava.build(sew_add[0])


@pytest.mark.lava
def test_the_built_network_has_a_port_per_input_and_output_and_a_process_per_population(sew_add, tmp_path):
    net, report = sew_add
    built = snn2chip_lava.build(net)
    pops = net.populations
    assert list(built.inputs) == list(net.inputs) and list(built.outputs) == list(net.outputs)
    for name in net.inputs:
        assert built.inputs[name].shape == built.shapes[name] == tuple(reversed(pops[name].shape))  # (W, H, C)
        assert built.inputs[name].process is built.process
    assert built.shapes["input"] == (8, 8, 1) and built.nir_shapes["input"] == (1, 8, 8)
    for name in net.outputs:
        assert built.outputs[name].shape == built.shapes[name] and built.outputs[name].process is built.process
    kinds = {"lif": "LIF", "relay": "GradedVec"}
    assert {n: type(p).__name__ for n, p in built.processes.items()} == {
        n: kinds[p.kind] for n, p in pops.items() if p.kind != "input"}
    assert list(built.synapses) == [g.name for g in net.groups]
    assert {type(p).__name__ for p in built.synapses.values()} == {"Conv", "Dense", "DelayDense", "Sparse", "DelaySparse"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.process = None
    with pytest.raises(TypeError):
        built.processes["x"] = None
    compiler.write_build(tmp_path / "build", net, report)
    again = snn2chip_lava.build(tmp_path / "build")  # a build folder works as well as a ChipNet
    assert again.shapes == built.shapes and again.process is not built.process  # new processes each time


@pytest.mark.lava
@pytest.mark.slow
def test_a_users_source_and_sink_get_the_simulators_outputs_bit_for_bit(sew_add, user_io):
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.monitor.process import Monitor

    net, _ = sew_add
    x = np.asarray(digits_test()[0][:1])
    steps = OPTIONS.steps + net.pipeline_depth
    (output,) = net.outputs
    relay = next(n for n, p in net.populations.items() if p.kind == "relay")
    lif = next(n for n, p in net.populations.items() if p.kind == "lif" and n != output)  # a spiking layer

    built = snn2chip_lava.build(net)
    payloads = built.encode(x, steps)["input"][0]  # (W, H, C, steps): io.source.RingBuffer's layout
    assert payloads.max() == 16  # graded: the image x 16
    generator = user_io.SpikeGenerator(np.moveaxis(payloads, -1, 0))  # this user's source sends time first
    generator.s_out.connect(built.inputs["input"])
    recorders = {output: user_io.Recorder(built.shapes[output], steps), lif: user_io.Recorder(built.shapes[lif], steps)}
    built.outputs[output].connect(recorders[output].a_in)  # the network's output port
    built.processes[lif].s_out.connect(recorders[lif].a_in)  # any population's spikes
    inner = Sink(shape=built.shapes[relay], buffer=steps)  # Lava's own sink on a relay (graded payloads)
    built.processes[relay].s_out.connect(inner.a_in)
    monitor = Monitor()  # the read-out integrates: its v is the network's answer
    monitor.probe(built.processes[output].v, steps)
    generator.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    try:
        got = {name: snn2chip_lava.from_lava(r.data.get(), len(built.shapes[name])) for name, r in recorders.items()}
        got[relay] = built.decode(relay, inner.data.get())  # a RingBuffer sink records (W, H, C, steps)
        v = np.reshape(monitor.get_data()[built.processes[output].name]["v"], (steps, *built.shapes[output]))
        got[f"{output}.v"] = snn2chip_lava.from_lava(v, len(built.shapes[output]))
    finally:
        generator.stop()
    sim = simulate(net, x, steps, record=[output, lif, relay], probe=[output])
    for key, values in got.items():
        np.testing.assert_array_equal(values, sim[key][0], err_msg=key)
    assert sim[lif].any() and np.abs(sim[relay]).max() > 1 and sim[f"{output}.v"].any()  # not vacuous
