"""Simulator == Lava, bit for bit: every output, every step, u and v of every LIF population."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn2chip import chip
from snn2chip.errors import ModelError
from snn2chip.chip import loihi
from snn2chip.chip.ir import ChipNet, Population, SynapseGroup, conv_as_sparse
from snn2chip.backends.lava import lava_kernel, nir_index, run_lava
from snn2chip.backends.simulator import simulate
from tests.conftest import FIXTURES


def random_net(seed: int, graded_input: bool, delays: bool, stress: bool, stride: int, groups: int,
               subtract: bool = False):
    """A network with conv, dense, sparse, delays (dense and sparse), a graded relay, a join of four
    groups and recurrence;
    ``subtract``: the conv and fc neurons reset by subtraction.

    ``stress`` uses extreme weights, exponents and payloads so that Lava's 32-bit wraps, the 24-bit
    u wrap, the v clip and the 24-bit conv wrap all happen.
    """
    rng = np.random.default_rng(seed)
    c_in, size = 2, int(rng.integers(4, 7))
    bits = 24 if stress else 8
    big = 2**22 if stress else 40
    out_size = (size + 2 - 3) // stride + 1
    conv_shape = (2 * groups, out_size, out_size)
    pops = {
        "in": Population("in", "input", (c_in, size, size), payload_bits=bits if graded_input else 0),
        "conv": Population("conv", "lif", conv_shape, du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
                           vth=int(rng.integers(1, 200)), bias_exp=int(rng.integers(0, 8))),
        "fc": Population("fc", "lif", (9,), du=4095, dv=int(rng.integers(0, 300)), vth=int(rng.integers(1, 400))),
        "relay": Population("relay", "relay", (9,), vth=int(rng.integers(0, 3)), payload_bits=24),
        "out": Population("out", "lif", (5,), du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
                          vth=int(rng.integers(1, 2**17 if stress else 300))),
    }
    pops["conv"] = Population(**{**pops["conv"].__dict__, "shape": conv_shape,
                                 "bias_mant": rng.integers(-4096, 4096, conv_shape)})

    def weights(shape, low=-256, high=256):
        w = rng.integers(low, high, shape)
        if stress:
            w[rng.random(shape) < 0.3] = high - 1
        return w

    n_conv = int(np.prod(conv_shape))
    rows = rng.choice(5, 6)
    cols = rng.choice(9, 6)
    keep = np.unique(rows * 9 + cols, return_index=True)[1]
    groups_ = (
        SynapseGroup("c1", "conv", "in", "conv", weights((2 * groups, c_in // groups, 3, 3), -128, 128) * (512 if stress else 1),
                     stride=(stride, stride), padding=(1, 1), groups=groups),
        SynapseGroup("d1", "dense", "conv", "fc", weights((9, n_conv)), weight_exp=int(rng.integers(-3, 4)),
                     num_weight_bits=int(rng.integers(3, 9))),
        SynapseGroup("d2", "dense", "in", "fc", weights((9, c_in * size * size), 0, 256), weight_exp=3 if stress else 0,
                     delays=rng.integers(0, 5, (9, c_in * size * size)) if delays else None),
        SynapseGroup("rec", "dense", "fc", "fc", weights((9, 9)), weight_exp=-1),
        SynapseGroup("to_relay", "dense", "fc", "relay", weights((9, 9)), weight_exp=7 if stress else 0),
        SynapseGroup("sp", "sparse", "relay", "out", weights((6,))[keep], rows=rows[keep], cols=cols[keep],
                     weight_exp=int(rng.integers(-2, 3)), delays=rng.integers(0, 4, keep.size) if delays else None),
        SynapseGroup("sp_in", "sparse", "in", "fc", weights((3,)), rows=np.array([0, 4, 8]), cols=np.array([1, 5, 7]),
                     delays=rng.integers(0, 6, 3) if delays else None),
        SynapseGroup("back", "dense", "out", "fc", weights((9, 5))),
    )
    if subtract:
        for name in ("conv", "fc"):
            vth = pops[name].vth
            pops[name] = Population(**{**pops[name].__dict__, "reset": "subtract", "vsub": vth + int(rng.integers(0, 2))})
    net = ChipNet(pops, groups_, inputs=("in",), outputs=("out",))
    shape = (3, 10, c_in, size, size)
    x = rng.integers(-big, big, shape) if graded_input else (rng.random(shape) < 0.4)
    return net, x.astype(np.float64)


LIF_POPS = ["conv", "fc", "out"]


def assert_bit_exact(net, x, record, probe):
    sim = simulate(net, x, record=record, probe=probe)
    lava = run_lava(net, x, record=record, probe=probe)
    assert sorted(sim) == sorted(lava)
    for key in sim:
        np.testing.assert_array_equal(sim[key], lava[key], err_msg=key)
    return sim


def conv_exp_net(seed: int):
    """Convs with negative exponents (mantissa kernels, Lava's Sparse semantics) from a graded
    input and from a graded relay, beside one at exponent 0 from the same relay."""
    rng = np.random.default_rng(seed)
    pops = {
        "in": Population("in", "input", (2, 5, 5), payload_bits=12),
        "r": Population("r", "relay", (3, 5, 5), payload_bits=24),
        "n": Population("n", "lif", (3, 3, 3), du=4095, dv=int(rng.integers(0, 4096)), vth=int(rng.integers(100, 5000))),
    }

    def kernel(shape):
        return rng.integers(-255, 256, shape)

    groups = (
        SynapseGroup("c1", "conv", "in", "r", kernel((3, 2, 3, 3)), weight_exp=int(rng.integers(-8, 0)), padding=(1, 1),
                     num_weight_bits=int(rng.integers(5, 9))),
        SynapseGroup("c2", "conv", "r", "n", kernel((3, 3, 3, 3)), weight_exp=int(rng.integers(-8, 0)), stride=(2, 2),
                     padding=(1, 1)),
        SynapseGroup("c3", "conv", "r", "n", kernel((3, 3, 3, 3)), stride=(2, 2), padding=(1, 1)),
        SynapseGroup("c4", "conv", "in", "n", rng.integers(-127, 128, (3, 2, 1, 1)) * 2, weight_exp=-1, stride=(2, 2)),  # exact shift
    )
    x = rng.integers(-(2**11), 2**11, (1, 6, 2, 5, 5)).astype(np.float64)
    return ChipNet(pops, groups, inputs=("in",), outputs=("n",)), x


@pytest.mark.parametrize("seed", range(3))
def test_a_conv_with_an_exponent_runs_as_its_sparse_synapses(seed):
    """Summed as a convolution in the simulator, as explicit synapses in Lava: the same integers."""
    net, x = conv_exp_net(seed)
    pops = net.populations
    sparse = ChipNet(pops, tuple(conv_as_sparse(g, pops[g.src].shape, pops[g.dst].shape) if g.weight_exp else g
                                 for g in net.groups), inputs=net.inputs, outputs=net.outputs)
    assert [g.kind for g in sparse.groups] == ["sparse", "sparse", "conv", "sparse"]
    got, want = simulate(net, x, record=["r", "n"], probe=["n"]), simulate(sparse, x, record=["r", "n"], probe=["n"])
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert want["n.u"].any() and np.abs(want["r"]).max() > 2**8


@pytest.mark.lava
def test_a_conv_with_an_exponent_equals_lava():
    net, x = conv_exp_net(0)
    assert_bit_exact(net, x, ["r", "n"], ["n"])


@pytest.mark.lava
@pytest.mark.slow
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    graded_input=st.booleans(),
    delays=st.booleans(),
    stress=st.booleans(),
    stride=st.sampled_from([1, 2]),
    groups=st.sampled_from([1, 2]),
    subtract=st.booleans(),
)
def test_simulator_equals_lava_on_random_networks(seed, graded_input, delays, stress, stride, groups, subtract):
    net, x = random_net(seed, graded_input, delays, stress, stride, groups, subtract)
    sim = assert_bit_exact(net, x[:1], ["conv", "fc", "relay", "out"], LIF_POPS)
    assert sim["fc"].any() and sim["fc.u"].any()  # the network is active: the comparison is not vacuous


@pytest.mark.lava
def test_wraps_and_clips_happen_and_match():
    """Stress inputs drive u past 2**23 (wrap), v onto its clip limit and conv sums past 2**23."""
    net, x = random_net(seed=7, graded_input=True, delays=False, stress=True, stride=1, groups=1)
    sim = assert_bit_exact(net, x[:1], ["conv", "fc", "relay", "out"], LIF_POPS)
    v = np.concatenate([sim[f"{p}.v"].reshape(-1) for p in LIF_POPS])
    u = np.concatenate([sim[f"{p}.u"].reshape(-1) for p in LIF_POPS])
    assert np.abs(v).max() == loihi.MAX_UV - 1  # clipped
    assert np.abs(u).max() > loihi.MAX_UV // 2 and (u < 0).any() and (u > 0).any()
    relay = sim["relay"].reshape(-1)
    assert np.abs(relay).max() > 2**16  # beyond int16, the type LIF declares for a_in: Lava carries int32


@pytest.mark.lava
def test_reset_by_subtraction_keeps_the_charge_above_threshold_in_both():
    """The subtractive LIF (custom Lava process) against the simulator, and against its definition."""
    net, x = random_net(seed=5, graded_input=True, delays=False, stress=False, stride=1, groups=1, subtract=True)
    sim = assert_bit_exact(net, x[:1], ["conv", "fc", "out"], LIF_POPS)
    pop = net.populations["fc"]
    v, s = sim["fc.v"][0], sim["fc"][0]
    assert s.any() and (v[s == 1] > 0).any()  # some neurons kept charge after a spike: not a reset to 0
    fired = s == 1
    # before the reset v exceeded vth << 6; after it, v is that value minus vsub << 6
    assert np.all(v[fired] + (pop.vsub << 6) > pop.vth << 6)


def test_layout_helpers():
    shape = (2, 3, 4)
    x = np.arange(24).reshape(shape)
    lava = np.transpose(x, (2, 1, 0))
    np.testing.assert_array_equal(x.reshape(-1)[nir_index(shape)], lava.reshape(-1))
    w = np.arange(2 * 1 * 2 * 3).reshape(2, 1, 2, 3)
    assert lava_kernel(w).shape == (2, 3, 2, 1)
    assert lava_kernel(w)[1, 0, 0, 0] == w[1, 0, 1, 2]  # flipped in both spatial axes


@pytest.mark.lava
def test_effective_weights_follow_lava():
    from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(0)
    for low, high in ((-400, 400), (0, 300), (-300, 1)):
        for bits in (2, 5, 8):
            w = rng.integers(low, high, (20, 20))
            mode = determine_sign_mode(w)
            expected = truncate_weights(clip_weights(w, mode, num_bits=8), mode, bits)
            np.testing.assert_array_equal(loihi.effective_weights(w, bits), expected)
            assert loihi.sign_mode(w) == {SignMode.MIXED: "mixed", SignMode.EXCITATORY: "excitatory",
                                          SignMode.INHIBITORY: "inhibitory"}[mode]


def test_chip_ir_round_trips_through_hdf5(tmp_path):
    net, _ = random_net(seed=3, graded_input=False, delays=True, stress=False, stride=2, groups=2)
    chip.save(net, tmp_path / "net.h5")
    back = chip.load(tmp_path / "net.h5")
    assert list(back.populations) == list(net.populations) and back.inputs == net.inputs
    for a, b in zip(net.groups, back.groups):
        assert a.name == b.name and a.kind == b.kind and a.stride == b.stride and a.groups == b.groups
        np.testing.assert_array_equal(a.weights, b.weights)
    x = (np.random.default_rng(1).random((2, 6, *net.populations["in"].shape)) < 0.5).astype(float)
    for key, values in simulate(net, x, record=LIF_POPS).items():
        np.testing.assert_array_equal(values, simulate(back, x, record=LIF_POPS)[key])


def test_chip_ir_rejects_newer_and_broken_files(tmp_path):
    import h5py

    net, _ = random_net(seed=3, graded_input=False, delays=False, stress=False, stride=1, groups=1)
    path = tmp_path / "net.h5"
    chip.save(net, path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = chip.FORMAT_VERSION + 1
    with pytest.raises(ModelError) as info:
        chip.load(path)
    assert str(info.value) == (f"{path}: written in chip IR format 6 by a newer snn2chip; this one reads format 5")
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = chip.FORMAT_VERSION
        del f["groups/c1"]
    with pytest.raises(ModelError, match="broken chip network file: KeyError"):
        chip.load(path)
    (tmp_path / "text.h5").write_text("no")
    with pytest.raises(ModelError, match="not a chip network: it is not HDF5"):
        chip.load(tmp_path / "text.h5")


def test_version_2_files_still_load_and_run_bit_for_bit():
    """tests/fixtures/chip_ir_v2.h5 was written by snn2chip 0.2.0 (chip IR format 2): a residual
    chain with a bias and a two-step delay line; its simulator outputs are stored beside it."""
    net = chip.load(FIXTURES / "chip_ir_v2.h5")
    assert (net.pipeline_depth, net.depth["d"], net.output_of, net.dt) == (4, 4, {"output": "d"}, 1.0)
    roles = {name: (p.role, p.origin) for name, p in net.populations.items()}
    assert roles["a@2"] == ("delay", "a") and roles["bias.always_on"] == ("bias", "") and roles["d"] == ("model", "")
    with np.load(FIXTURES / "chip_ir_v2_outputs.npz") as stored:
        x = np.concatenate([stored["x"], np.zeros((3, net.pipeline_depth, 4))], 1)
        got = simulate(net, x, record=list(net.populations), probe=["d"])
        for key, values in got.items():
            np.testing.assert_array_equal(values, stored[key], err_msg=key)


def test_ir_validates_itself_and_compares_by_value(tmp_path):
    from snn2chip.chip import IRError
    from snn2chip.errors import InternalError

    net, _ = random_net(seed=3, graded_input=False, delays=False, stress=False, stride=1, groups=1)
    chip.save(net, tmp_path / "net.h5")
    again = chip.load(tmp_path / "net.h5")
    assert again == net and again.populations["conv"] == net.populations["conv"]
    assert again.groups[0] != again.groups[1]
    with pytest.raises(ValueError, match="read-only"):
        again.groups[0].weights[0] = 1
    with pytest.raises(IRError, match=r"node 'x': field 'du' is 5000; expected an integer in \[0, 4095\]"):
        Population("x", "lif", (2,), du=5000)
    with pytest.raises(IRError, match="synapse group refers to population 'nowhere'"):
        ChipNet(net.populations, (*net.groups, SynapseGroup("g", "dense", "fc", "nowhere", np.ones((1, 9), int))),
                net.inputs, net.outputs)
    assert issubclass(IRError, InternalError)  # the compiler's own invariants: reported as a bug


def test_integer_helpers_match_their_definitions():
    import torch

    x = torch.as_tensor(np.random.default_rng(0).integers(-(2**45), 2**45, 10**5))
    x = torch.cat([x, torch.tensor([2**31, -(2**31), 2**31 - 1, 2**23, -(2**23), 2**24, 0])])
    for bits in (24, 32):
        half = 1 << (bits - 1)
        assert torch.equal(loihi.wrap(x, bits), torch.remainder(x + half, 1 << bits) - half)
    for factor in (0, 1, 1843, 4095, 4096):
        product = x * factor
        assert torch.equal(loihi.trunc_decay(x, factor), torch.sign(product) * (product.abs() >> 12))
        state = x.clamp(-(2**31), 2**31 - 1).to(torch.int32)  # the neuron state: the float64 path
        wide = state.to(torch.int64) * factor
        assert torch.equal(loihi.trunc_decay(state, factor), (torch.sign(wide) * (wide.abs() >> 12)).to(torch.int32))
