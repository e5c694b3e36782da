"""Lava replay (snn2chip/backends/replay.py, snn2chip/verify/lava_check.py): one population at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from snn2chip import compiler, memory
from snn2chip.backends import replay, simulator
from snn2chip.cli import main
from snn2chip.errors import ModelError
from snn2chip.passes.quantize import Options
from snn2chip.verify import lava_check
from snn2chip.verify.data import digits_test

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
DIGITS = dict(input_bits=6, input_scale=16)


def _net(name: str, **options):
    return compiler.compile_file(ZOO / f"{name}.nir", options=Options(steps=4, **DIGITS, **options))[1]


class _Bar:
    def update(self, n):
        pass

    def set_postfix_str(self, text):
        pass


def test_subnet_keeps_the_population_and_turns_its_sources_into_inputs():
    net = _net("sew_add")
    name = next(p for p, pop in net.populations.items() if pop.role == "delay")  # a delay copy alone
    sub = replay.subnet(net, name)
    assert sub.outputs == (name,) and set(sub.inputs) == {g.src for g in net.incoming(name)}
    assert all(sub.populations[s].kind == "input" and sub.populations[s].shape == net.populations[s].shape
               for s in sub.inputs)
    assert sub.groups == tuple(net.incoming(name)) and sub.populations[name].role == "model"


def test_choose_covers_every_feature_before_spreading():
    net = _net("ms_resnet", strategy="relay")
    every = replay.choose(net, "all")
    assert "bias.always_on" not in every and all(net.populations[p].kind != "input" for p in every)
    wanted = set().union(*(replay.features(net, p) for p in every))
    for count in (len(wanted), len(wanted) + 3):
        chosen = replay.choose(net, str(count))
        assert set().union(*(replay.features(net, p) for p in chosen)) == wanted
        assert len(chosen) <= count and chosen == [p for p in every if p in chosen]  # network order
    assert {"relay", "conv", "conv graded", "sparse graded"} <= wanted
    with pytest.raises(ModelError, match="no population 'nope' with incoming synapses to replay"):
        replay.choose(net, "layer1.0.sn1,nope")


@pytest.mark.lava
@pytest.mark.slow
def test_replay_of_every_population_is_bit_exact_and_catches_a_changed_spike(monkeypatch):
    net = _net("sew_iand")
    x = np.asarray(digits_test().x[:1])
    names = replay.choose(net, "all")
    result = lava_check.replay_check(net, x, 4, names, _Bar())
    assert result.bit_exact and result.populations == len(names) and result.mode == "replay"
    # a source spike that the simulator did not send: Lava, fed it, must disagree with the simulator
    real = simulator.simulate
    target = names[-1]
    source = net.incoming(target)[0].src

    def tampered(*args, **kwargs):
        records = real(*args, **kwargs)
        records[source][0] = 1 - records[source][0]
        return records

    monkeypatch.setattr(simulator, "simulate", tampered)
    result = lava_check.replay_check(net, x, 4, [target], _Bar())
    assert not result.bit_exact and result.first_difference.startswith(f"sample 0, '{target}")
    assert "(replayed alone), chip step 1," in result.first_difference  # the first step the change reaches


@pytest.mark.lava
@pytest.mark.slow
def test_verify_lava_populations_reports_the_replay(capsys):
    assert main(["verify", str(ZOO / "ms_resnet.nir"), "--data", "digits", "--samples", "2",
                 "--lava-populations", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    lava = report["lava"]
    assert (report["lava_bit_exact"], lava["mode"], lava["samples"]) == (True, "replay", 1)
    assert lava["populations"] <= 4 and len(lava["compared"]) >= lava["populations"]
    assert report["checks"][1]["detail"] == (f"Lava replaying {lava['populations']} populations one at a time equals "
                                             "the simulator bit for bit on 1 sample")


def test_a_replay_spans_the_steps_where_the_population_or_a_source_is_active():
    """From the first to the last step at which the population or a source is non-zero (one step
    when none ever is)."""
    records = {"p": np.zeros((2, 6, 2)), "s": np.zeros((2, 6, 3))}
    assert lava_check._active_span(records, 0, ["p", "s"]) == (0, 1)
    records["s"][0, 3, 1] = 1
    records["s"][1, 1, 0] = 1
    assert lava_check._active_span(records, 0, ["p", "s"]) == (3, 4)
    records["p"][0, 2, 0] = -1
    records["p"][0, 4, 1] = 5
    assert lava_check._active_span(records, 0, ["p", "s"]) == (2, 5)
    assert lava_check._active_span(records, 1, ["p", "s"]) == (1, 2)


def test_replayed_populations_are_simulated_in_runs_that_fit_the_memory_budget():
    net = _net("ms_resnet", strategy="relay")
    names = replay.choose(net, "all")
    steps = 4 + net.pipeline_depth
    whole = sum(b for b, _ in simulator.estimate_bytes(net, 2, 2, steps, *lava_check._needs(net, names)))
    assert lava_check._runs(net, names, 2, steps) == [names]
    with memory.limited(whole // 3):
        runs = lava_check._runs(net, names, 2, steps)
        assert len(runs) > 2 and sum(runs, []) == names
        for run in runs[:-1]:
            over = run + [names[names.index(run[-1]) + 1]]
            assert sum(b for b, _ in simulator.estimate_bytes(net, 2, 2, steps, *lava_check._needs(net, over))) > whole // 3
