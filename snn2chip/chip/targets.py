"""Target chips and systems: TOML files (``targets/*.toml``) read into frozen dataclasses.

A target file has the keys below (``targets/loihi2.toml`` documents each with its source);
every one is required and no other is accepted, so that a typo is an error naming the key.
Per-core resources are what the partitioner (:mod:`snn2chip.chip.partition`) packs against:
``neurons``, ``synaptic_memory_bits`` (a dense or sparse synapse costs ``synapse_bits``; a conv
kernel entry costs ``kernel_entry_bits`` once per core when ``shared_conv_kernels``, else every
connection is a synapse), ``fan_in_axons`` (distinct source neurons a core receives from) and
``fan_out_axons`` (per neuron, the cores it sends to). The built-in targets live in the
repository's top-level ``targets/`` folder, installed as the data package :data:`BUILTIN_PACKAGE`.
"""

from __future__ import annotations

import dataclasses
import sys
from importlib import resources
from pathlib import Path

from snn2chip.errors import ModelError
from snn2chip.files import require_file

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

#: the package holding the built-in ``*.toml`` files (pyproject.toml maps it onto ``targets/``)
BUILTIN_PACKAGE = "snn2chip.target_files"

#: (section, key) -> type of every key of a target file
SCHEMA = {
    ("", "name"): str, ("", "description"): str,
    ("chip", "cores"): int,
    ("core", "neurons"): int, ("core", "synaptic_memory_bits"): int, ("core", "fan_in_axons"): int,
    ("core", "fan_out_axons"): int, ("core", "synapse_bits"): int, ("core", "shared_conv_kernels"): bool,
    ("core", "kernel_entry_bits"): int,
    ("limits", "weight_bits"): int, ("limits", "payload_bits"): int, ("limits", "max_delay"): int,
}
#: the target file format this snn2chip reads (key ``format_version``, optional, default 1)
FORMAT_VERSION = 1
#: a target file larger than this is refused unread
MAX_FILE_BYTES = 1 << 20
#: integer keys that may be 0 (the others must be positive)
MAY_BE_ZERO = {("limits", "payload_bits"), ("limits", "max_delay")}


@dataclasses.dataclass(frozen=True)
class Target:
    """One chip type and the named systems built from it (``systems``: name -> chips)."""

    name: str
    description: str
    cores_per_chip: int
    neurons: int
    synaptic_memory_bits: int
    fan_in_axons: int
    fan_out_axons: int
    synapse_bits: int
    shared_conv_kernels: bool
    kernel_entry_bits: int
    weight_bits: int
    payload_bits: int
    max_delay: int
    systems: tuple[tuple[str, int], ...]
    path: str = ""

    @property
    def capacity(self) -> dict[str, int]:
        """Per-core capacity of each resource the partitioner packs (see :data:`snn2chip.chip.tiling.RESOURCES`)."""
        return {"neurons": self.neurons, "memory_bits": self.synaptic_memory_bits,
                "fan_in_axons": self.fan_in_axons, "fan_out_axons": self.fan_out_axons}

    def chips(self, system: str) -> int:
        for name, chips in self.systems:
            if name == system:
                return chips
        raise ModelError(f"target '{self.name}' has no system '{system}' (known: {', '.join(n for n, _ in self.systems)})",
                         option="--system")


def parse(text: str, path: str) -> Target:
    """A :class:`Target` from TOML ``text``; a malformed file raises :class:`ModelError` naming ``path`` and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"not valid TOML ({e})", file=path) from None
    version = data.pop("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ModelError(f"key 'format_version' is {version!r}; this snn2chip reads target files of format "
                         f"1..{FORMAT_VERSION}", file=path)
    sections = {s for s, _ in SCHEMA if s} | {"systems"}
    for key, value in data.items():
        if isinstance(value, dict) and key not in sections or not isinstance(value, dict) and ("", key) not in SCHEMA:
            raise ModelError(f"unknown key '{key}'", file=path)
    values = {}
    for (section, key), kind in SCHEMA.items():
        table = data.get(section, {}) if section else data
        dotted = f"{section}.{key}" if section else key
        if not isinstance(table, dict):
            raise ModelError(f"key '{section}' must be a table", file=path)
        if key not in table:
            raise ModelError(f"missing key '{dotted}'", file=path)
        value = table[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)
                            or value < (0 if (section, key) in MAY_BE_ZERO else 1)):
            least = "a non-negative" if (section, key) in MAY_BE_ZERO else "a positive"
            raise ModelError(f"key '{dotted}' must be {least} integer, not {value!r}", file=path)
        if kind is not int and not isinstance(value, kind):
            raise ModelError(f"key '{dotted}' must be a {kind.__name__}, not {value!r}", file=path)
        values[key if section != "chip" else "cores_per_chip"] = value
    for section in sections - {"systems"}:
        for key in data.get(section, {}):
            if (section, key) not in SCHEMA:
                raise ModelError(f"unknown key '{section}.{key}'", file=path)
    systems = data.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise ModelError("missing key 'systems' (a table of system name = number of chips)", file=path)
    for name, chips in systems.items():
        if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
            raise ModelError(f"key 'systems.{name}' must be a positive integer (chips), not {chips!r}", file=path)
    return Target(**values, systems=tuple(sorted(systems.items(), key=lambda item: (item[1], item[0]))), path=path)


def load_file(path: str | Path) -> Target:
    """Read a target file; a missing, unreadable or malformed file raises :class:`ModelError`."""
    path = require_file(path, "target")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ModelError(f"is {path.stat().st_size:,} bytes; a target file is a short TOML text", file=str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelError(f"not a text file in UTF-8 (byte {e.start}); target files are TOML", file=str(path)) from None
    except OSError as e:
        raise ModelError(f"cannot be read: {e.strerror}", file=str(path)) from None
    return parse(text, str(path))


def builtin() -> dict[str, Path]:
    """Name -> file of the built-in targets, in name order.

    pip installs a package as plain files (never zipped), so the resource folder is a real
    directory and each value a real path (shown by ``snn2chip targets``).
    """
    folder = Path(str(resources.files(BUILTIN_PACKAGE)))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve(target: "str | Path | Target") -> Target:
    """A :class:`Target` from a built-in name, a path to a ``.toml`` file, or a Target."""
    if isinstance(target, Target):
        return target
    known = builtin()
    if str(target) in known:
        return load_file(known[str(target)])
    if str(target).endswith(".toml"):
        return load_file(target)
    raise ModelError(f"unknown target '{target}' (built-in: {', '.join(known)}; or a path to a .toml target file)",
                     option="--target")
