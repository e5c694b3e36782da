"""The memory budget: sizes a file or a network declares are checked against it before
anything of that size is allocated, so that too big an input is a one-line error, never a
``MemoryError``.

The budget is ``SNN2CHIP_MEMORY_LIMIT`` (bytes, or with a suffix K, M, G, T: powers of 1024)
when set, else 80 % of the memory available now (``MemAvailable`` in ``/proc/meminfo``, else
the physical memory).
"""

from __future__ import annotations

import math
import os

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


def budget() -> int:
    """The memory budget in bytes (see the module docstring)."""
    text = os.environ.get(ENV, "").strip().upper()
    if not text:
        return int(FRACTION * available())
    factor = _SUFFIXES.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in _SUFFIXES else text
    try:
        value = float(number) * factor
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ModelError(f"environment variable {ENV}={os.environ[ENV]!r} is not a positive size "
                         "(bytes, or a number with K, M, G or T)", option=ENV)
    return int(value)


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


def check(nbytes: float, what: str, *, file: str | None = None, node: str | None = None,
          option: str | None = None, hint: str = "") -> None:
    """Raise a :class:`ModelError` when ``what`` needs more than the budget."""
    limit = budget()
    if nbytes > limit:
        raise ModelError(f"{what} needs {fmt(nbytes)}, more than the memory budget of {fmt(limit)} "
                         f"(80% of the available memory, or {ENV}){'; ' + hint if hint else ''}",
                         file=file, node=node, option=option)
