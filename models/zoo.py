"""Build the shipped model zoo, ``models/zoo/``, from scratch: ``python -m models.zoo`` (``make zoo``).

For every entry of :data:`SPECS`: seed, build, train on the digits training split, fold BatchNorm,
export (NIR for the spiking networks, ONNX for the ANN), then measure the test accuracy of the
folded PyTorch model and of the exported file (the NIR file with snn2chip's float executor, the ONNX
file with onnxruntime) on the whole test split. The build fails if the exported file's predictions
differ from the folded PyTorch model's. Written files:

- ``<name>.nir`` / ``resnet_ann.onnx``: the exported networks;
- ``<name>.pt``: the trained (unfolded) PyTorch state dicts; with the ``config`` recorded in
  ``zoo.json`` they rebuild the PyTorch models, so tests compare PyTorch and NIR without retraining;
- ``resnet_ann_calib.npy``: 64 training images for the ANN->SNN conversion's calibration;
- ``zoo.json``: the manifest (deterministic: no timings);
- ``timings.json``: training wall times of this build (machine- and load-dependent).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from models import data
from models.export import export
from models.layers import count_parameters, fold_bn, seed_everything
from models.ms_resnet import ms_resnet_small
from models.network import READOUT_RULE, accuracy, predict
from models.sew_resnet import sew_resnet_small
from models.spiking_resnet import resnet_ann_small, spiking_resnet_small
from models.train import THREADS, train

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MANIFEST = "zoo.json"
CALIBRATION = "resnet_ann_calib.npy"
CALIBRATION_COUNT = 64
OUTPUT_SUFFIXES = (".nir", ".pt", ".onnx", ".npy", ".json")
INPUT_ENCODING = (
    "digits image / 16 (values in [0, 1]), shape (1, 8, 8), applied unchanged as the input current "
    "at every time step; the first neurons encode it into spikes"
)

BUILDERS = {
    "sew_resnet_small": sew_resnet_small,
    "ms_resnet_small": ms_resnet_small,
    "spiking_resnet_small": spiking_resnet_small,
    "resnet_ann_small": resnet_ann_small,
}

_SMALL = {"layers": [2, 2], "widths": [16, 32]}
_TRAIN_SNN = {"epochs": 40, "lr": 2e-3, "batch_size": 64, "weight_decay": 1e-4, "max_shift": 1, "seed": 0}

#: The zoo: name -> file, family, constructor and its arguments, training settings.
SPECS = {
    "sew_add": {"file": "sew_add.nir", "family": "SEW-ResNet", "variant": "ADD",
                "builder": "sew_resnet_small", "kwargs": {"connect": "ADD", "steps": 4, **_SMALL}, "train": _TRAIN_SNN},
    "sew_and": {"file": "sew_and.nir", "family": "SEW-ResNet", "variant": "AND",
                "builder": "sew_resnet_small", "kwargs": {"connect": "AND", "steps": 4, **_SMALL}, "train": _TRAIN_SNN},
    "sew_iand": {"file": "sew_iand.nir", "family": "SEW-ResNet", "variant": "IAND",
                 "builder": "sew_resnet_small", "kwargs": {"connect": "IAND", "steps": 4, **_SMALL}, "train": _TRAIN_SNN},
    "ms_resnet": {"file": "ms_resnet.nir", "family": "MS-ResNet", "variant": "membrane shortcut",
                  "builder": "ms_resnet_small", "kwargs": {"steps": 6, **_SMALL}, "train": _TRAIN_SNN},
    "spiking_resnet": {"file": "spiking_resnet.nir", "family": "Spiking ResNet", "variant": "plain (SEW paper baseline)",
                       "builder": "spiking_resnet_small", "kwargs": {"steps": 8, **_SMALL}, "train": _TRAIN_SNN},
    "resnet_ann": {"file": "resnet_ann.onnx", "family": "ReLU ANN ResNet", "variant": "same layers as spiking_resnet",
                   "builder": "resnet_ann_small", "kwargs": dict(_SMALL),
                   "train": {**_TRAIN_SNN, "epochs": 30}},
}


def build(spec: dict) -> torch.nn.Module:
    """The untrained model of ``spec`` (call after seeding)."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["kwargs"].items()}
    return BUILDERS[spec["builder"]](**kwargs)


def load_model(name: str, zoo_dir: Path = ZOO_DIR) -> torch.nn.Module:
    """The trained PyTorch model ``name`` rebuilt from ``zoo.json``'s config and its ``.pt`` state dict."""
    manifest = json.loads((zoo_dir / MANIFEST).read_text())
    entry = manifest["models"][name]
    model = build(entry["config"])
    state = torch.load(zoo_dir / entry["weights"], weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def train_spec(spec: dict, log=print):
    """Seed, build and train the model of ``spec``: ``(model, history)``."""
    settings = dict(spec["train"])
    seed_everything(settings["seed"])
    model = build(spec)
    history = train(model, log=log, **settings)
    return model, history


def executor_predictions(path: Path, x: np.ndarray, steps: int) -> np.ndarray:
    """Predictions of snn2chip's float executor on the NIR file (readout rule: argmax at the last step)."""
    import snn2chip

    graph = snn2chip.load(path)
    out = snn2chip.run(graph, np.array(x, dtype=np.float32), steps=steps, record=["readout"])
    return out["readout"][:, -1].argmax(axis=1)


def onnx_predictions(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})
    return logits.argmax(axis=1)


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """torch.onnx.export of the trained ANN in eval mode (input ``input`` (N, 1, 8, 8), output ``logits``)."""
    model = copy.deepcopy(model).eval()
    example = torch.zeros(1, *model.input_shape)
    torch.onnx.export(model, example, str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                      do_constant_folding=True)


def build_entry(name: str, spec: dict, zoo_dir: Path, log=print) -> tuple[dict, float]:
    """Train, fold, export and measure one zoo model: (manifest entry, training seconds)."""
    log(f"[{name}] training {spec['family']} ({spec['variant']})")
    model, history = train_spec(spec, log=log)
    x_test, y_test = data.test_set()
    folded = fold_bn(model)
    weights = f"{name}.pt"
    torch.save(model.state_dict(), zoo_dir / weights)
    path = zoo_dir / spec["file"]
    entry = {
        "file": spec["file"],
        "family": spec["family"],
        "variant": spec["variant"],
        "weights": weights,
        "config": {k: spec[k] for k in ("builder", "kwargs")},
        "train": spec["train"],
        "input_shape": list(data.INPUT_SHAPE),
        "input_encoding": INPUT_ENCODING,
        "test_samples": int(len(y_test)),
        "parameters": count_parameters(folded),
        "pytorch_unfolded_test_accuracy": accuracy(predict(model, x_test), y_test),
    }
    folded_predictions = predict(folded, x_test)
    entry["pytorch_test_accuracy"] = accuracy(folded_predictions, y_test)
    if spec["file"].endswith(".onnx"):
        export_onnx(model, path)
        file_predictions = onnx_predictions(path, x_test)
        entry.update(format="onnx", dt=None, time_steps=None, readout="prediction = argmax of the logits",
                     input_encoding="digits image / 16 (values in [0, 1]), shape (1, 8, 8), one forward pass",
                     calibration=CALIBRATION, onnxruntime_test_accuracy=accuracy(file_predictions, y_test))
        # The ONNX file holds the unfolded model (torch's exporter folds BN itself): compare with it.
        reference = predict(model, x_test)
    else:
        metadata = {"model": name, "family": spec["family"], "variant": spec["variant"], "time_steps": folded.steps,
                    "readout": READOUT_RULE, "input_encoding": INPUT_ENCODING, "calibration": CALIBRATION}
        export(folded, path, metadata=metadata)
        file_predictions = executor_predictions(path, x_test, folded.steps)
        import snn2chip.summary

        totals = snn2chip.summary.summarize(snn2chip.load(path))["totals"]
        entry.update(format="nir", dt=1.0, time_steps=folded.steps, readout=READOUT_RULE,
                     neurons=totals["neurons"], nir_nodes=totals["nodes"], nir_edges=totals["edges"],
                     executor_test_accuracy=accuracy(file_predictions, y_test))
        reference = folded_predictions
    differ = int(np.sum(file_predictions != reference))
    if differ:
        raise RuntimeError(f"{name}: the exported file's predictions differ from PyTorch's on {differ} test images")
    log(f"[{name}] {history['seconds']:.1f} s; test accuracy: PyTorch {entry['pytorch_unfolded_test_accuracy']:.4f}, "
        f"folded {entry['pytorch_test_accuracy']:.4f}, exported file "
        f"{entry.get('executor_test_accuracy', entry.get('onnxruntime_test_accuracy')):.4f}")
    return entry, history["seconds"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.zoo", description="Rebuild models/zoo/ from scratch.")
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="output folder (default: models/zoo)")
    parser.add_argument("--only", nargs="+", choices=sorted(SPECS), help="build only these entries (the manifest keeps the others)")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path, timings_path = out / MANIFEST, out / "timings.json"
    manifest = {"models": {}}
    timings = {"models": {}}
    if args.only and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        timings = json.loads(timings_path.read_text()) if timings_path.exists() else timings
    elif not args.only:  # from scratch: no stale file of an earlier zoo survives
        for stale in out.iterdir():
            if stale.is_file() and stale.suffix in OUTPUT_SUFFIXES:
                stale.unlink()
    x_train, _ = data.train_set()
    np.save(out / CALIBRATION, data.calibration_images(CALIBRATION_COUNT))
    start = time.perf_counter()
    for name, spec in SPECS.items():
        if args.only and name not in args.only:
            continue
        entry, seconds = build_entry(name, spec, out)
        manifest["models"][name] = entry
        timings["models"][name] = {"train_seconds": round(seconds, 1)}
    manifest.update(
        split="sklearn.datasets.load_digits, train_test_split(test_size=0.25, random_state=0, stratify=y): "
              f"{len(x_train)} training / {len(data.test_set()[1])} test images (models/data.py)",
        split_sha256=data.split_digest(),
        calibration={"file": CALIBRATION, "images": CALIBRATION_COUNT, "source": "training split only (models.data.calibration_images)"},
        dt=1.0,
        readout=READOUT_RULE,
    )
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    timings.update(threads=THREADS, cpu_count=os.cpu_count(), machine=platform.machine(), torch=torch.__version__,
                   load_average_at_end=list(os.getloadavg()), total_seconds=round(time.perf_counter() - start, 1))
    timings_path.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"zoo written to {out}: {size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
