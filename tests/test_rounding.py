"""Error-compensating rounding (GPTQ) on calibration data, and the two-term bias."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from snn2chip.passes import lower, rounding
from snn2chip.cli import main
from snn2chip.frontend.graph import make_graph
from snn2chip.chip.loihi import effective_weights
from snn2chip.passes.quantize import Options, compile_graph
from tests.conftest import chain


def _correlated_spikes(rng, samples: int, inputs: int) -> np.ndarray:
    """Binary inputs driven by a few shared causes (as spikes of one layer are), plus noise."""
    causes = rng.random((samples, 5)) < 0.3
    fan = rng.random((5, inputs)) < 0.4
    return ((causes @ fan) + (rng.random((samples, inputs)) < 0.1) > 0).astype(np.float64)


def _grid(w: np.ndarray):
    """Unit steps, 8-bit magnitudes, every weight keeping its sign."""
    return np.ones_like(w), np.where(w < 0, -256.0, 0.0), np.where(w > 0, 255.0, 0.0)


def test_uncorrelated_inputs_round_to_nearest():
    w = np.random.default_rng(0).normal(0, 20, (6, 9))
    h = np.diag(np.arange(1.0, 10.0))
    np.testing.assert_array_equal(rounding.compensated(w, [h], *_grid(w)), np.round(w))


def test_compensation_halves_the_input_error_on_correlated_inputs():
    rng = np.random.default_rng(1)
    x = _correlated_spikes(rng, 4000, 40)
    w = rng.normal(0, 7, (12, 40))
    w[:, 3] = 0  # a weight that is zero stays zero (no new synapses)
    (h,) = rounding.second_moments(lower.FloatGroup("a", "b", "dense", w, ("fc",)), x[:, None], (40,))
    np.testing.assert_allclose(h, x.T @ x / len(x))
    nearest = np.round(w)
    compensated = rounding.compensated(w, [h], *_grid(w))
    error = lambda q: np.sqrt(np.mean(((q - w) @ x.T) ** 2))  # noqa: E731
    # measured: 1.33 -> 0.61 chip units RMS
    assert error(compensated) < 0.6 * error(nearest)
    assert rounding.input_error(compensated - w, w, [h]) == pytest.approx(error(compensated) / np.sqrt(np.mean((w @ x.T) ** 2)))
    assert np.all(compensated == np.round(compensated))
    assert np.all(np.sign(compensated) * np.sign(w) >= 0) and np.all(compensated[:, 3] == 0)
    assert np.abs(compensated - w).max() < 2  # it moves weights by less than two steps here


def test_inputs_never_active_are_rounded_to_nearest():
    rng = np.random.default_rng(2)
    x = _correlated_spikes(rng, 500, 8)
    x[:, 5] = 0
    w = rng.normal(0, 9, (4, 8))
    out = rounding.compensated(w, [x.T @ x / len(x)], *_grid(w))
    np.testing.assert_array_equal(out[:, 5], np.round(w[:, 5]))


@pytest.mark.parametrize("stride, padding, groups", [((1, 1), (1, 1), 1), ((2, 2), (0, 1), 2)])
def test_conv_second_moments_are_those_of_the_patches(stride, padding, groups):
    """One matrix per conv group, over every output position's receptive field (zeros in the padding)."""
    rng = np.random.default_rng(3)
    out_per_group, cin, size = 3, 4, 6
    w = rng.normal(size=(out_per_group * groups, cin // groups, 3, 3))
    fg = lower.FloatGroup("a", "b", "conv", w, ("conv",), stride=stride, padding=padding, groups=groups)
    frames = (rng.random((5, 2, cin, size, size)) < 0.4).astype(np.float64)
    moments = rounding.second_moments(fg, frames.reshape(5, 2, -1), (cin, size, size))
    padded = np.pad(frames.reshape(10, cin, size, size), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    assert len(moments) == groups
    for g, h in enumerate(moments):
        channels = slice(g * cin // groups, (g + 1) * cin // groups)
        patches = [padded[f, channels, i : i + 3, j : j + 3].reshape(-1)
                   for f in range(10)
                   for i in range(0, padded.shape[2] - 2, stride[0])
                   for j in range(0, padded.shape[3] - 2, stride[1])]
        p = np.array(patches)
        np.testing.assert_allclose(h, p.T @ p / len(p))


def _dense_nodes(rng, inputs: int = 40, hidden: int = 16):
    return chain(("fc", nir.Affine(weight=rng.normal(0, 0.3, (hidden, inputs)), bias=rng.normal(0.05, 0.02, hidden))),
                 ("lif", nir.IF(r=np.ones(hidden), v_threshold=np.ones(hidden))), shape=(inputs,), out=(hidden,))


def _dense_net(rng):
    return make_graph(*_dense_nodes(rng))


def _group_weights(net, name: str) -> np.ndarray:
    """The float weights one chip group stands for (IF, r = 1, dt = 1: chip weight = scale * float weight)."""
    g = next(g for g in net.groups if g.name == name)
    return effective_weights(g.weights, g.num_weight_bits) * 2.0**g.weight_exp / net.populations[g.dst].scale


@pytest.mark.parametrize("how", ["compensated", "nearest"])
def test_calibrated_compile_reports_the_input_error_of_each_group(how):
    """``input_rel_rms_error``: RMS of (chip - float weights) @ x over RMS of float weights @ x, x the calibration inputs."""
    rng = np.random.default_rng(4)
    graph = _dense_net(rng)
    calib = _correlated_spikes(rng, 300, 40)
    net, report = compile_graph(graph, Options(steps=1, calibration=calib, rounding=how))
    assert report.rounding == how
    groups = [g for g in report.layers[0].groups if g.source == "input"]
    assert [g.name for g in groups] == ["lif<-input+", "lif<-input-"]
    w = graph.nodes["fc"].weight
    for entry, part in zip(groups, (np.clip(w, 0, None), np.clip(w, None, 0))):
        rms = lambda m: np.sqrt(np.mean((m @ calib.T) ** 2))  # noqa: E731
        assert entry.input_rel_rms_error == pytest.approx(rms(_group_weights(net, entry.name) - part) / rms(part))
        assert 0 < entry.input_rel_rms_error < 0.01
        assert entry.rounding == how


def test_maps_reading_too_many_inputs_are_rounded_to_nearest(monkeypatch):
    """H grows with the square of the inputs a row reads: beyond ``MAX_INPUTS`` a map is rounded to nearest."""
    rng = np.random.default_rng(10)
    graph = _dense_net(rng)
    calib = _correlated_spikes(rng, 300, 40)
    monkeypatch.setattr(rounding, "MAX_INPUTS", 39)
    net, report = compile_graph(graph, Options(steps=1, calibration=calib))
    nearest, _ = compile_graph(graph, Options(steps=1, calibration=calib, rounding="nearest"))
    entries = [g for g in report.layers[0].groups if g.source == "input"]
    assert len(entries) == 2
    for entry in entries:
        assert entry.rounding == "nearest" and entry.input_rel_rms_error is None
    for a, b in zip(net.groups, nearest.groups):
        np.testing.assert_array_equal(a.weights, b.weights)


def test_compensated_rounding_beats_nearest_on_held_out_inputs():
    rng = np.random.default_rng(5)
    graph = _dense_net(rng)
    calib, held_out = _correlated_spikes(rng, 300, 40), _correlated_spikes(np.random.default_rng(6), 300, 40)
    w = graph.nodes["fc"].weight
    errors = {}
    for how in ("compensated", "nearest"):
        net, _ = compile_graph(graph, Options(steps=1, calibration=calib, rounding=how))
        chip = _group_weights(net, "lif<-input+") + _group_weights(net, "lif<-input-")
        errors[how] = np.sqrt(np.mean(((chip - w) @ held_out.T) ** 2))
    assert errors["compensated"] < 0.75 * errors["nearest"], errors


def test_unknown_rounding_is_rejected():
    with pytest.raises(Exception, match="unknown rounding 'stochastic' \\(known: compensated, nearest\\)"):
        compile_graph(_dense_net(np.random.default_rng(7)), Options(rounding="stochastic"))


def test_bias_keeps_16_bits_in_a_coarse_and_a_fine_group():
    """A bias is added every step, so its rounding error adds up: the remainder of the 8-bit coarse
    group goes into a fine pair with its own exponent."""
    rng = np.random.default_rng(8)
    graph = _dense_net(rng)
    net, report = compile_graph(graph)
    names = [g.name for g in report.layers[0].groups if g.source == "bias.always_on"]
    assert names[0] == "lif<-bias" and set(names[1:]) <= {"lif<-bias.fine+", "lif<-bias.fine-"} and len(names) > 1
    alpha = net.populations["lif"].scale
    chip = sum(effective_weights(g.weights, g.num_weight_bits)[:, 0] * 2.0**g.weight_exp
               for g in net.groups if g.dst == "lif" and g.src == "bias.always_on")
    target = alpha * graph.nodes["fc"].bias
    coarse_step = 2.0 ** next(g.weight_exp for g in net.groups if g.name == "lif<-bias")
    assert np.abs(chip - target).max() <= coarse_step / 2**9  # 8 more bits than the coarse group alone
    coarse = next(effective_weights(g.weights, g.num_weight_bits)[:, 0] for g in net.groups if g.name == "lif<-bias")
    assert np.abs(coarse * coarse_step - target).max() > coarse_step / 8  # what one 8-bit group would leave


def test_compile_prints_the_input_error_with_calibration(capsys, tmp_path, tmp_nir):
    rng = np.random.default_rng(11)
    model = tmp_nir(*_dense_nodes(rng))
    np.save(tmp_path / "calib.npy", _correlated_spikes(rng, 300, 40).astype(np.float32))
    for how in ("compensated", "nearest"):
        assert main(["compile", str(model), "--calib", str(tmp_path / "calib.npy"), "--rounding", how, "--steps", "1",
                     "-o", str(tmp_path / how), "-v"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("  lif: "))
        assert "lif<-input+ dense e=" in line and f"%, {how}), lif<-input- dense e=" in line, line
    with pytest.raises(SystemExit) as info:
        main(["compile", str(model), "--rounding", "stochastic", "-o", str(tmp_path / "x")])
    assert info.value.code == 2
    assert "argument --rounding: invalid choice: 'stochastic'" in capsys.readouterr().err
