"""verify in shards: any split of the samples gives the same figures, a shard survives its
``.npz`` file, and ``-o DIR`` resumes an interrupted run (or says why it cannot)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from snn2chip.cli import main
from snn2chip.compiler import compile_file
from snn2chip.passes.quantize import Options
from snn2chip.verify import data, shards

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
MODEL = ZOO / "sew_add.nir"
RUN = ["verify", str(MODEL), "--data", "digits", "--samples", "100", "--shard-size", "16", "--json"]


def _equal(a: shards.Shard, b: shards.Shard) -> None:
    for (ka, va), (kb, vb) in zip(sorted(a.arrays().items()), sorted(b.arrays().items())):
        assert ka == kb
        np.testing.assert_array_equal(va, vb, err_msg=ka)


@pytest.fixture(scope="module")
def sew_add():
    graph, net, _ = compile_file(MODEL, "loihi2", Options(input_bits=6, input_scale=16.0, steps=4))
    x = np.asarray(data.load("digits", graph.out_shapes[graph.inputs[0]]).x[:100])
    return shards.Worker(graph, net, 4, None), x


def test_any_split_of_the_samples_merges_to_the_same_shard(sew_add):
    """Shards of 7 samples, merged in any order, equal one shard of 100 (run in chunks of 64):
    counts, predictions, output records and the raster of sample 0."""
    worker, x = sew_add
    whole = worker.shard(x, 0)
    parts = [worker.shard(x[a:b], a) for a, b in shards.plan(len(x), 7)]
    assert len(parts) == 15 and parts[-1].stop - parts[-1].start == 2
    merged = shards.merge(parts[::-1])
    _equal(merged, whole)
    assert merged.raster and set(merged.raster) == set(whole.tally.layers)
    assert sum(whole.tally.layers["sn1"][:2]) > 0  # the model fires: the comparison is not of zeros


def test_a_shard_survives_its_npz_file(sew_add, tmp_path):
    worker, x = sew_add
    shard = worker.shard(x[:5], 0)
    np.savez(tmp_path / "s.npz", **shard.arrays())
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:
        _equal(shards.Shard.from_arrays(f), shard)


def test_merge_refuses_a_gap(sew_add):
    worker, x = sew_add
    with pytest.raises(ValueError, match="not consecutive"):
        shards.merge([worker.shard(x[:3], 0), worker.shard(x[5:8], 5)])


def _report(out: str) -> dict:
    report = json.loads(out)
    report.pop("execution")
    return report


def test_an_interrupted_run_resumes_where_it_stopped(capsys, tmp_path, monkeypatch):
    """-o DIR keeps each finished shard in DIR.shards; after an interrupt at the fourth shard the
    same command runs only the shards missing and reports what one uninterrupted run reports."""
    assert main(RUN) == 0
    expected = _report(capsys.readouterr().out)
    out_dir = tmp_path / "out"
    real, calls = shards.Worker.shard, []

    def interrupted(self, x, start, advance=lambda n: None):
        calls.append(start)
        if calls == [0, 16, 32, 48]:
            raise KeyboardInterrupt
        return real(self, x, start, advance)

    monkeypatch.setattr(shards.Worker, "shard", interrupted)
    assert main([*RUN, "-o", str(out_dir)]) == 130
    assert "interrupted" in capsys.readouterr().err
    kept = tmp_path / "out.shards"
    assert sorted(p.name for p in kept.iterdir()) == ["run.json", "shard-000000000.npz", "shard-000000016.npz",
                                                      "shard-000000032.npz"]
    assert not out_dir.exists()  # no half-written output
    calls.clear()
    assert main([*RUN, "-o", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    assert calls == [48, 64, 80, 96]
    assert f"snn2chip verify: resuming: 3 finished shards read from {kept}" in err
    report = json.loads(out)
    assert report["execution"]["resumed"] == 3 and report["execution"]["shards"] == 7
    report.pop("execution")
    assert report == expected
    assert json.loads((out_dir / "report.json").read_text())["agreement"] == expected["agreement"]
    assert not kept.exists()


def test_changed_options_drop_the_saved_shards_and_say_so(capsys, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    real = shards.Worker.shard

    def stop_after_one(self, x, start, advance=lambda n: None):
        if start:
            raise KeyboardInterrupt
        return real(self, x, start, advance)

    monkeypatch.setattr(shards.Worker, "shard", stop_after_one)
    assert main([*RUN, "-o", str(out_dir)]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*RUN, "--input-scale", "8", "-o", str(out_dir)]) == 0
    err = capsys.readouterr().err
    assert (f"snn2chip verify: dropped the shards saved in {tmp_path / 'out.shards'}: the compile options changed "
            "since") in err
    assert json.loads((out_dir / "report.json").read_text())["execution"]["resumed"] == 0


def test_a_foreign_shards_folder_is_refused(capsys, tmp_path):
    (tmp_path / "out.shards").mkdir()
    (tmp_path / "out.shards" / "notes.txt").write_text("mine")
    assert main([*RUN, "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"snn2chip: error: option -o: {tmp_path / 'out.shards'} exists and is not snn2chip's shards folder "
                   "(no valid run.json); remove it or choose another -o")
    assert (tmp_path / "out.shards" / "notes.txt").exists()


def test_ray_missing_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main([*RUN, "--ray"]) == 1
    assert capsys.readouterr().err == ("snn2chip: error: option --ray: Ray is not installed: --ray needs the 'ray' "
                                       "extra (pip install 'snn2chip[ray]')\n")
