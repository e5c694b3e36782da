"""Typed reports: frozen dataclasses that turn into the JSON snn2chip writes.

A report class derives from :class:`Record`; :meth:`Record.to_json` gives plain JSON values
(nested records, tuples, numpy scalars and arrays converted). Fields declared with
:func:`optional` are left out of the JSON while None (keys that only some entries carry);
fields declared with :func:`flat` put their record's keys at this level.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


def optional(default=None) -> Any:
    """A field left out of the JSON while it is None."""
    return dataclasses.field(default=default, metadata={"omit_none": True})


def flat() -> Any:
    """A required record field whose keys go to the enclosing level of the JSON."""
    return dataclasses.field(metadata={"flatten": True})


def json_value(value):
    """``value`` as plain JSON data (dicts, lists, str, int, float, bool, None)."""
    if isinstance(value, Record):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_value(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of the typed reports."""

    def to_json(self) -> dict:
        """The report as JSON data, in field order."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            if f.metadata.get("flatten"):
                out.update(json_value(value))
            else:
                out[f.name] = json_value(value)
        return out
