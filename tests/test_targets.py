"""Target files: the built-in targets, exact errors for malformed files, and the CLI."""

from __future__ import annotations

import pytest

from snn2chip import ModelError
from snn2chip.chip import targets
from snn2chip.cli import main
from tests.conftest import SINABS

LOIHI2_TEXT = targets.builtin()["loihi2"].read_text()


def test_builtin_targets_carry_the_public_figures():
    l1, l2 = targets.resolve("loihi1"), targets.resolve("loihi2")
    assert (l1.cores_per_chip, l1.neurons, l1.fan_in_axons, l1.fan_out_axons, l1.synaptic_memory_bits) == \
        (128, 1024, 4096, 4096, 128 * 1024 * 8)
    assert (l2.cores_per_chip, l2.neurons, l2.payload_bits, l2.max_delay) == (128, 8192, 24, 63)
    assert l2.shared_conv_kernels and not l1.shared_conv_kernels and l1.payload_bits == 0
    assert l2.systems == (("chip", 1), ("kapoho_point", 8), ("hala_point", 1152)) and l2.chips("hala_point") == 1152


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("neurons = 8192", "neurons = -1"), "key 'core.neurons' must be a positive integer, not -1"),
    (lambda t: t.replace("neurons = 8192", "neurons = \"many\""), "key 'core.neurons' must be a positive integer, not 'many'"),
    (lambda t: t.replace("shared_conv_kernels = true", "shared_conv_kernels = 1"), "key 'core.shared_conv_kernels' must be a bool, not 1"),
    (lambda t: t.replace("max_delay = 63", ""), "missing key 'limits.max_delay'"),
    (lambda t: t.replace("max_delay = 63", "max_delay = 63\nmax_dealy = 3"), "unknown key 'limits.max_dealy'"),
    (lambda t: t.replace("hala_point = 1152", "hala_point = 0"), "key 'systems.hala_point' must be a positive integer (chips), not 0"),
    (lambda t: t + "\n[extra]\nx = 1\n", "unknown key 'extra'"),
    (lambda t: t.replace("[core]", "[core"), "not valid TOML"),
])
def test_malformed_target_file_names_the_key(tmp_path, edit, message):
    path = tmp_path / "my.toml"
    path.write_text(edit(LOIHI2_TEXT))
    with pytest.raises(ModelError) as info:
        targets.resolve(str(path))
    assert str(info.value).startswith(f"{path}: {message}")


def test_unknown_target_and_missing_file():
    with pytest.raises(ModelError, match=r"^option --target: unknown target 'loihi9' \(built-in: loihi1, loihi2; or a path"):
        targets.resolve("loihi9")
    with pytest.raises(ModelError, match=r"nope.toml: no such target file"):
        targets.resolve("nope.toml")


def test_cli_lists_targets_and_compiles_for_a_users_target_file(capsys, tmp_path):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "loihi1: Intel Loihi (14 nm)" in out and "hala_point (1,152 chips, 147,456 cores)" in out
    path = tmp_path / "mine.toml"
    path.write_text(LOIHI2_TEXT.replace('name = "loihi2"', 'name = "mine"').replace("neurons = 8192", "neurons = 512"))
    assert main(["targets", "--target-file", str(path)]) == 0
    assert capsys.readouterr().out.startswith("mine: Intel Loihi 2")
    assert main(["compile", str(SINABS), "-o", str(tmp_path / "b"), "--target-file", str(path), "--system", "chip"]) == 0
    out = capsys.readouterr().out
    assert f"-> {tmp_path / 'b'}/network.h5 (mine, " in out and "of 1 chips (chip), cores / bound" in out
    path.write_text(LOIHI2_TEXT.replace("fan_in_axons = 32768", "fan_in_axons = 0"))
    assert main(["compile", str(SINABS), "-o", str(tmp_path / "c"), "--target-file", str(path)]) == 1
    assert capsys.readouterr().err == f"snn2chip: error: {path}: key 'core.fan_in_axons' must be a positive integer, not 0\n"
    assert not (tmp_path / "c").exists()
