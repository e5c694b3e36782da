"""The one digits train/test split used by every zoo script and test.

scikit-learn's ``load_digits`` (1,797 grey images of 8x8 pixels, values 0..16, 10 classes; it
ships with scikit-learn, so nothing is downloaded) split once with
``train_test_split(test_size=0.25, random_state=0, stratify=y)``: 1,347 training and 450 test
images. Images are scaled to [0, 1] (divided by 16) and shaped ``(1, 8, 8)`` (one channel);
the networks receive them as a constant input current at every time step. The split itself is
defined in :mod:`snn2chip.data` (``snn2chip verify --data digits`` uses it); this module adds
what only the zoo needs.

Calibration data (the ANN->SNN conversion's activation statistics) come from the training
images only: :func:`calibration_images`.
"""

from __future__ import annotations

import numpy as np

from snn2chip.verify.data import DIGITS_CLASSES as NUM_CLASSES
from snn2chip.verify.data import DIGITS_SHAPE as INPUT_SHAPE
from snn2chip.verify.data import DIGITS_SPLIT_SEED as SPLIT_SEED
from snn2chip.verify.data import DIGITS_TEST_SIZE as TEST_SIZE
from snn2chip.verify.data import digits_split as _split

__all__ = ["INPUT_SHAPE", "NUM_CLASSES", "SPLIT_SEED", "TEST_SIZE", "train_set", "test_set", "split_digest",
           "calibration_images"]


def train_set() -> tuple[np.ndarray, np.ndarray]:
    """Training images ``(1347, 1, 8, 8)`` float32 in [0, 1] and labels ``(1347,)`` int64 (read-only)."""
    x_train, y_train, _, _ = _split()
    return x_train, y_train


def test_set() -> tuple[np.ndarray, np.ndarray]:
    """Test images ``(450, 1, 8, 8)`` float32 in [0, 1] and labels ``(450,)`` int64 (read-only)."""
    _, _, x_test, y_test = _split()
    return x_test, y_test


def split_digest() -> str:
    """SHA-256 of the split's arrays (train x, train y, test x, test y): recorded in zoo.json."""
    import hashlib

    x_train, y_train, x_test, y_test = _split()
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in (x_train, y_train, x_test, y_test))).hexdigest()


def calibration_images(count: int = 64, seed: int = 0) -> np.ndarray:
    """``count`` training images (a fixed random choice without replacement), float32 ``(count, 1, 8, 8)``."""
    x_train, _ = train_set()
    index = np.sort(np.random.default_rng(seed).choice(len(x_train), size=count, replace=False))
    return np.ascontiguousarray(x_train[index])
