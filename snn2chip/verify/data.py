"""Input data for ``snn2chip verify``: the bundled digits split, and users' ``.npz`` files.

**digits**: scikit-learn's ``load_digits`` (1,797 grey 8x8 images, values 0..16, 10 classes;
shipped with scikit-learn, nothing is downloaded), split once with
``train_test_split(test_size=0.25, random_state=0, stratify=y)`` into 1,347 training and 450
test images, scaled to [0, 1] (image / 16) and shaped ``(1, 8, 8)`` like the model zoo's Input
node. The zoo (``models/``) uses exactly this split.

**.npz files** hold

- ``x`` (required), numbers, one of two layouts, ``shape`` being the model's input shape:
  ``(samples, *shape)``: one analog value per input (e.g. a current), held constant for every
  time step; or ``(samples, steps, *shape)``: one value per time step (spike trains of 0/1, or
  time-varying currents);
- ``y`` (optional): ``(samples,)`` integer class labels ``>= 0``, for accuracies.

:func:`load_npz` checks both and says what is wrong in one line.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import zipfile
from pathlib import Path

import numpy as np

from snn2chip import memory
from snn2chip.errors import ModelError
from snn2chip.files import require_file
from snn2chip.frontend import shapes

DIGITS_SHAPE = (1, 8, 8)
DIGITS_CLASSES = 10
DIGITS_TEST_SIZE = 0.25
DIGITS_SPLIT_SEED = 0


@functools.lru_cache(maxsize=None)
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 images ``(n, 1, 8, 8)`` in [0, 1] and
    int64 labels, read-only."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0)).reshape(-1, *DIGITS_SHAPE)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    for a in (x_train, x_test, y_train, y_test):
        a.setflags(write=False)
    return x_train, y_train, x_test, y_test


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (``(samples, *shape)`` or ``(samples, steps, *shape)``), labels ``y`` or None."""

    name: str
    x: np.ndarray
    y: np.ndarray | None

    def steps(self, input_shape: tuple[int, ...]) -> int | None:
        """The time axis' length, or None for constant inputs."""
        return self.x.shape[1] if shapes.has_time_axis(self.x.shape, input_shape) else None

    def check_labels(self, classes: int) -> None:
        """Labels must be classes of a model with ``classes`` outputs (``0 .. classes - 1``)."""
        if self.y is not None and int(self.y.max()) >= classes:
            raise ModelError(f"'y' holds label {int(self.y.max())}, but the model's output has {classes} classes "
                             f"(labels 0..{classes - 1})", file=self.name)

    @functools.cached_property
    def digests(self) -> list[str]:
        """SHA-256 per sample of its float32 values (golden files and resumed runs check they see
        the same inputs); computed once."""
        return [hashlib.sha256(np.ascontiguousarray(s, dtype=np.float32).tobytes()).hexdigest() for s in self.x]

    def head(self, count: int) -> "Dataset":
        """The first ``count`` samples."""
        return Dataset(self.name, self.x[:count], None if self.y is None else self.y[:count])


def digits_test() -> Dataset:
    """The 450 test images and their labels."""
    _, _, x, y = digits_split()
    return Dataset("digits (test split, 450 images)", x, y)


def _layouts(shape: tuple[int, ...]) -> str:
    dims = ", ".join(map(str, shape))
    return f"(samples, {dims}) (held constant) or (samples, steps, {dims}) (one value per step)"


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of an ``.npy`` stream, without reading its data."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        shape, _, dtype = np.lib.format._read_array_header(fp, version)  # version 3: no public reader
    return shape, dtype


def declared_bytes(path: str | Path) -> int:
    """Bytes the arrays of an ``.npy`` or ``.npz`` file declare in their headers."""
    headers = []
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as fp:
                    headers.append(_npy_header(fp))
    else:
        with open(path, "rb") as fp:
            headers.append(_npy_header(fp))
    return sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers)


def read_arrays(path: str | Path) -> np.ndarray | dict[str, np.ndarray]:
    """The array of an ``.npy`` file, or the arrays of an ``.npz`` file by name; one-line errors.

    The sizes the headers declare are checked against the memory budget before any data is read.
    """
    file = str(path)
    require_file(path)
    try:
        size = declared_bytes(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ModelError(f"not a readable .npy or .npz file ({' '.join(str(e).split())})", file=file) from None
    memory.check(size, "the arrays its headers declare", file=file)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not numpy, truncated, or object arrays
        raise ModelError(f"not a readable .npy or .npz file ({' '.join(str(e).split())})", file=file) from None


def check_values(x: np.ndarray, what: str, file: str) -> np.ndarray:
    """``x`` if it holds real, finite numbers and at least one sample, else a one-line error."""
    if x.dtype.kind not in "biuf":
        raise ModelError(f"{what} has dtype {x.dtype}; expected real numbers", file=file)
    if x.ndim == 0 or x.shape[0] == 0 or x.size == 0:
        raise ModelError(f"{what} has shape {x.shape}: no samples", file=file)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ModelError(f"{what} contains NaN or infinite values", file=file)
    return x


def load_samples(path: str | Path) -> np.ndarray:
    """Samples (e.g. for calibration) from an ``.npy`` file, or the array ``x`` of an ``.npz``."""
    arrays = read_arrays(path)
    if isinstance(arrays, np.ndarray):
        return check_values(arrays, "the array", str(path))
    if "x" not in arrays:
        raise ModelError(f"no array 'x' in the file (it has {', '.join(arrays) or 'none'})", file=str(path))
    return check_values(arrays["x"], "'x'", str(path))


def read_inputs(path: str, input_names: list[str]) -> np.ndarray | dict[str, np.ndarray]:
    """Inputs from ``.npy`` (one array) or ``.npz`` (``x``, or one array per Input node name),
    checked to be real, finite numbers."""
    arrays = read_arrays(path)
    if isinstance(arrays, np.ndarray):
        return check_values(arrays, "the array", path)
    if "x" in arrays:
        return check_values(arrays["x"], "'x'", path)
    if set(input_names) <= set(arrays):
        return {name: check_values(arrays[name], f"'{name}'", path) for name in input_names}
    raise ModelError(f"no array 'x' (nor arrays named after the Input nodes {input_names}) in the file", file=path)


def load_npz(path: str | Path, input_shape: tuple[int, ...]) -> Dataset:
    """Read and check an ``.npz`` file for a model whose input has shape ``input_shape``."""
    file = str(path)
    arrays = read_arrays(path)
    if isinstance(arrays, np.ndarray):
        raise ModelError("a .npy file holds one array: save 'x' (and 'y') with numpy.savez", file=file)
    if "x" not in arrays:
        raise ModelError(f"no array 'x' (arrays: {', '.join(arrays) or 'none'})", file=file)
    x, y = arrays["x"], arrays.get("y")
    if shapes.input_layout(x.shape, input_shape) is None:
        raise ModelError(f"'x' has shape {x.shape}; expected {_layouts(tuple(input_shape))}", file=file)
    if x.shape[0] == 0 or shapes.has_time_axis(x.shape, input_shape) and x.shape[1] == 0:
        raise ModelError(f"'x' has shape {x.shape}: no samples or no steps", file=file)
    check_values(x, "'x'", file)
    if y is not None:
        if y.shape != (x.shape[0],):
            raise ModelError(f"'y' has shape {y.shape}; expected ({x.shape[0]},), one label per sample of 'x'", file=file)
        if y.dtype.kind not in "biuf" or not np.array_equal(y, np.round(y)) or (y < 0).any():
            raise ModelError("'y' must hold integer class labels >= 0", file=file)
        y = y.astype(np.int64)
    return Dataset(file, x.astype(np.float32) if x.dtype.kind != "f" else x, y)


#: the firing probability of ``random:N`` inputs (per input neuron, held over the steps)
RANDOM_RATE = 0.1


def random_spikes(count: int, shape: tuple[int, ...], what: str = "--data") -> np.ndarray:
    """``random:N``: ``count`` binary samples of ``shape``, each neuron on with probability
    :data:`RANDOM_RATE` (``numpy.random.default_rng(0)``: the same for every run)."""
    memory.check(count * math.prod(shape) * 12, f"{count:,} random samples", option=what)
    return (np.random.default_rng(0).random((count, *shape)) < RANDOM_RATE).astype(np.float32)


def load(spec: str, input_shape: tuple[int, ...]) -> Dataset:
    """``digits`` (the test split), ``random:N`` (binary spikes, no labels) or an ``.npz`` file,
    checked against the model's input shape."""
    if spec.startswith("random:"):
        return Dataset(spec, random_spikes(int(spec.split(":", 1)[1]), tuple(input_shape)), None)
    if spec == "digits":
        if tuple(input_shape) != DIGITS_SHAPE:
            raise ModelError(f"digits are images of shape {DIGITS_SHAPE}; the model's input has shape {tuple(input_shape)}",
                             option="--data")
        return digits_test()
    return load_npz(spec, input_shape)
