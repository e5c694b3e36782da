"""Typed reports (snn2chip/records.py): what ``to_json`` writes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from snn2chip.passes.reports import Delayed, GroupReport, LayerReport, NeuronReport
from snn2chip.records import Record, flat, optional


@dataclasses.dataclass(frozen=True)
class _Inner(Record):
    a: int
    b: float | None = optional()


@dataclasses.dataclass(frozen=True)
class _Outer(Record):
    name: str
    inner: _Inner = flat()
    items: tuple[_Inner, ...] = ()
    table: dict | None = None


def test_to_json_flattens_omits_unset_optionals_and_converts_numpy():
    outer = _Outer("x", _Inner(np.int64(3)), (_Inner(1, np.float32(0.5)),), {1: np.arange(2)})
    assert outer.to_json() == {"name": "x", "a": 3, "items": [{"a": 1, "b": 0.5}], "table": {"1": [0, 1]}}
    assert type(outer.to_json()["a"]) is int  # a numpy scalar becomes a Python number
    json.dumps(outer.to_json())  # plain JSON all the way down
    assert _Outer("y", _Inner(1)).to_json()["table"] is None  # a plain None field stays, as null


def test_reports_are_frozen_and_layer_report_keys_are_flat():
    group = GroupReport("n<-input", "dense", "input", 4, -2, "mixed", 0.01, 0.002, through=("fc",))
    layer = LayerReport("n", "n", 4, 64.0, (group,), NeuronReport("lif", 64, du=4095, dv=0),
                        delayed=(Delayed("input", 1, "synaptic delay"),))
    data = layer.to_json()
    assert (data["kind"], data["vth"], data["du"], data["dv"]) == ("lif", 64, 4095, 0) and "neuron" not in data
    assert data["groups"][0]["through"] == ["fc"] and "recurrent" not in data["groups"][0]
    assert data["delayed"] == [{"source": "input", "steps": 1, "by": "synaptic delay"}] and "range_clamped" not in data
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.scale = 1.0
