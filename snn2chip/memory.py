"""The memory budget: sizes a file or a network declares are checked against it before
anything of that size is allocated, so that too big an input is a one-line error, never a
``MemoryError``.

The budget is the command's ``--memory-limit`` (:func:`limited`), else ``SNN2CHIP_MEMORY_LIMIT``
(bytes, or with a suffix K, M, G, T: powers of 1024) when set, else 80 % of the memory available
now (``MemAvailable`` in ``/proc/meminfo``, else the physical memory).
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator

import h5py

from snn2chip.errors import ModelError

ENV = "SNN2CHIP_MEMORY_LIMIT"
FRACTION = 0.8
_SUFFIXES = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def available() -> int:
    """Bytes of memory available to this process now."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


_limit: int | None = None


def parse_size(text: str) -> int | None:
    """Bytes of a size such as ``1500000``, ``512M`` or ``1.5G`` (powers of 1024); None if not a positive size."""
    text = text.strip().upper()
    factor = _SUFFIXES.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in _SUFFIXES else text
    try:
        value = float(number) * factor
    except ValueError:
        return None
    return int(value) if value >= 1 and math.isfinite(value) else None


@contextlib.contextmanager
def limited(limit: int | None) -> Iterator[None]:
    """Within the block, the budget is ``limit`` bytes (None: unchanged)."""
    global _limit
    before, _limit = _limit, limit if limit is not None else _limit
    try:
        yield
    finally:
        _limit = before


def budget() -> int:
    """The memory budget in bytes (see the module docstring)."""
    if _limit is not None:
        return _limit
    text = os.environ.get(ENV, "").strip()
    if not text:
        return int(FRACTION * available())
    value = parse_size(text)
    if value is None:
        raise ModelError(f"environment variable {ENV}={os.environ[ENV]!r} is not a positive size "
                         "(bytes, or a number with K, M, G or T)", option=ENV)
    return value


def hdf5_datasets(group: h5py.Group, file: str) -> list[tuple[int, str, tuple]]:
    """``(bytes, path, shape)`` of every dataset below ``group``, from their declarations (no data read)."""
    found: list[tuple[int, str, tuple]] = []

    def visit(path: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            found.append((math.prod(item.shape or ()) * item.dtype.itemsize, f"{group.name.strip('/')}/{path}".lstrip("/"),
                          item.shape))

    try:
        group.visititems(visit)
    except (KeyError, OSError) as e:  # broken links, unreadable objects
        raise ModelError(f"broken HDF5 structure ({' '.join(str(e).split())})", file=file) from None
    return found


def check_hdf5(group: h5py.Group, file: str) -> None:
    """The datasets below ``group`` must fit the budget together (checked before reading them)."""
    found = hdf5_datasets(group, file)
    if found:
        size, where, shape = max(found)
        check(sum(s for s, _, _ in found), f"reading its datasets (largest: '{where}', shape {shape})", file=file)


def fmt(nbytes: float) -> str:
    """``nbytes`` in the largest binary unit that keeps it >= 1, e.g. ``37.3 GiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def _source() -> str:
    """Where the budget comes from, for messages."""
    if _limit is not None:
        return "--memory-limit"
    return ENV if os.environ.get(ENV, "").strip() else f"{FRACTION:.0%} of the available memory; set --memory-limit"


def check(nbytes: float, what: str, *, file: str | None = None, node: str | None = None,
          option: str | None = None, hint: str = "") -> None:
    """Raise a :class:`ModelError` when ``what`` needs more than the budget."""
    limit = budget()
    if nbytes > limit:
        raise ModelError(f"{what} needs {fmt(nbytes)}, more than the memory budget of {fmt(limit)} "
                         f"({_source()}){'; ' + hint if hint else ''}",
                         file=file, node=node, option=option)
