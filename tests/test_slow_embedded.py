"""On the embedded SmolLM2-135M model (slow: minutes on 2 CPU cores). Run with `make test-slow`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from loramem import Fact, KnowledgeMemory, SynthConfig
from loramem.phonebook import FIRST, LAST

pytestmark = pytest.mark.slow

# Invented home towns: nothing the base model could know.
TOWNS = ["Vellmoor", "Quarrick", "Ostbrae", "Dunmarrow", "Kettleby", "Skarnholt", "Pellwick", "Tarvenne", "Morrowgate", "Ashcombe", "Brindlemere", "Cauldry", "Fennick", "Gorsewold", "Harrowden", "Ilvermoor", "Jessory", "Kilnbrook", "Lathering", "Mossdale", "Norwick", "Orrinford", "Pendlecross", "Quillon", "Rookmere", "Saltwhistle", "Thornaby", "Umberlee", "Varrowby", "Wexholme"]


def invented_facts(n: int = 30) -> list[Fact]:
    return [Fact(f"{FIRST[i]} {LAST[(7 * i) % len(LAST)]}", "home town", TOWNS[i]) for i in range(n)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    store = tmp_path_factory.mktemp("embedded") / "mem"
    # Bare-question training: this file checks recall, reopening and the conversion cache on the embedded model;
    # the default context-mixed recipe (3-4x the write time) is exercised by test_slow_stacking.py, and CI runs both.
    mem = KnowledgeMemory.open(store, synth=SynthConfig(context_mix=False))
    facts = invented_facts()
    report = mem.write(facts, namespace="towns")
    return store, mem, facts, report


def _score(answers, facts) -> float:
    return sum(f.object.lower() in a.text.lower() for a, f in zip(answers, facts)) / len(facts)


def test_embedded_model_recalls_30_invented_facts(written):
    store, mem, facts, report = written
    questions = [f.canonical_question for f in facts]
    with_module = _score(mem.ask(questions, namespace="towns"), facts)
    base = _score(mem.ask(questions, namespace=None), facts)
    print(f"\n30 invented facts: recall {with_module:.0%} with the module, {base:.0%} base; {report.summary()}")
    assert with_module >= 0.90
    assert base <= 0.05


def test_reopened_store_gives_the_same_answers_in_a_new_process(written):
    store, mem, facts, _ = written
    questions = [f.canonical_question for f in facts]
    here = [a.text for a in mem.ask(questions, namespace="towns")]
    code = (
        "import json, sys; from loramem import KnowledgeMemory; "
        f"m = KnowledgeMemory.open({str(store)!r}); "
        "print(json.dumps([a.text for a in m.ask(json.loads(sys.argv[1]), namespace='towns')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(questions)],
        capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == here


def test_embedded_alias_is_converted_once_and_cached(written):
    from loramem import models

    path = models.resolve_alias("smollm2-135m")
    assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    assert "quantization_config" not in json.loads((path / "config.json").read_text())


def test_one_more_fact_is_a_bounded_write_that_keeps_the_module(written):
    """Issue 11: one fact into the 30-fact module, replaying 8 held facts at 0.1x the learning rate. The new fact
    is recalled, the 30 are recalled as before (one may trade places), in well under the first write's time.
    Last in this file: it adds a version to the module the tests above read."""
    import dataclasses

    store, mem, facts, first = written
    before = _score(mem.ask([f.canonical_question for f in facts], namespace="towns"), facts)
    new = Fact("Wren Halloway", "home town", "Brackenholt")
    train = dataclasses.replace(mem.train_config, replay_items=8, warm_lr_scale=0.1, kl_weight=0.0)
    report = mem.write(new, namespace="towns", train=train, synth=SynthConfig(context_mix=False))
    held = _score(mem.ask([f.canonical_question for f in facts], namespace="towns"), facts)
    learnt = _score(mem.ask([new.canonical_question], namespace="towns"), [new])
    share = report.seconds / first.seconds
    replay = report.details["replay"]
    print(f"\none more fact: {report.seconds:.0f} s = {share:.2f}x the first write's {first.seconds:.0f} s; "
          f"held {before:.0%} -> {held:.0%}, new {learnt:.0%}; rounds {replay.get('checks')}")
    assert replay["bounded"] and replay["replayed"] == 8 and not replay["full_round"]
    assert learnt == 1.0
    assert held >= before - 1 / len(facts)
    assert share <= 0.5
