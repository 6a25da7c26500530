"""Incremental writes on the tiny model: a bounded replay sample, the repair of slipped items, no silent misses,
and the data schedule that stops resampling what is already recalled."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import COLOURS, FAST_LORA, FAST_SYNTH, FAST_TRAIN, NAMES

from loramem import Fact, KnowledgeMemory, SynthConfig
from loramem import train as train_mod
from loramem.types import Example

BARE = dataclasses.replace(FAST_SYNTH, context_mix=False)


def _open(tmp_path, tiny_model_dir, **train):  # type: ignore[no-untyped-def]
    return KnowledgeMemory.open(tmp_path / "store", model=str(tiny_model_dir), lora=FAST_LORA, synth=BARE,
                                train=dataclasses.replace(FAST_TRAIN, **train))


def test_a_small_write_replays_a_bounded_sample_and_checks_every_held_item(tmp_path, tiny_model_dir, facts):
    mem = _open(tmp_path, tiny_model_dir, replay_items=2)
    first = mem.write(facts[:5], namespace="people")
    second = mem.write(facts[5:], namespace="people")
    replay = second.details["replay"]
    assert replay["bounded"] and replay["held"] == 5 and replay["replayed"] == 2
    assert replay["check_seconds"] > 0  # every held item was checked after the round
    assert second.items_total == 6 and second.version == 2
    # Its round trained 3 items' examples (1 new + 2 replayed), not 6: fewer tokens per pass than the first.
    assert second.tokens_trained / max(1, second.steps) <= first.tokens_trained / max(1, first.steps) + 1e-9
    if second.reached_target:
        assert second.recall >= FAST_TRAIN.target_recall and not second.slipped
    answers = mem.ask([f.canonical_question for f in facts], namespace="people")
    hits = sum(a.text == c for a, c in zip(answers, COLOURS))
    assert hits >= round(second.recall * 6) - 1  # the report's recall is the whole module's, not the round's
    # replay_items None (the default): every held item is replayed, as before.
    full = _open(tmp_path / "full", tiny_model_dir)
    full.write(facts[:5], namespace="people")
    assert full.write(facts[5:], namespace="people").details["replay"] == {
        "held": 5, "replayed": 5, "bounded": False, "lr_scale": 1.0, "repair_rounds": 0, "full_round": False, "slipped": 0, "missed": 0,
        "check_seconds": 0.0}


def _spy_rounds(monkeypatch, missed, lrs=None):  # type: ignore[no-untyped-def]
    """Record each training round's item ids; every check of all 6 held items misses the id ``missed()`` gives
    (None: none); the checks inside train() stay real."""
    rounds: list[set[str]] = []
    probes_seen: list[list[Example]] = []
    real_train, real_recall, real_encode = train_mod.train, train_mod.exact_recall, train_mod.encode_all

    def spy_train(model, prompt, examples, config, **kw):  # type: ignore[no-untyped-def]
        rounds.append({e.item_id for e in examples})
        if lrs is not None:
            lrs.append(config.lr)
        return real_train(model, prompt, examples, config, **kw)

    def fake_recall(model, encoded, *args):  # type: ignore[no-untyped-def]
        if len(encoded) != 6:  # a check inside train(): the real one
            return real_recall(model, encoded, *args)
        miss = missed()
        return [e.item_id != miss for e in probes_seen[-1]]

    def spy_encode(examples, *args):  # type: ignore[no-untyped-def]
        probes_seen.append(list(examples))
        return real_encode(examples, *args)

    monkeypatch.setattr(train_mod, "train", spy_train)
    monkeypatch.setattr(train_mod, "exact_recall", fake_recall)
    monkeypatch.setattr(train_mod, "encode_all", spy_encode)
    return rounds


def test_items_that_slip_are_trained_again(tmp_path, tiny_model_dir, facts, monkeypatch):
    mem = _open(tmp_path, tiny_model_dir, replay_items=1, repair_rounds=2)
    mem.write(facts[:5], namespace="people")
    held = {it.id: it.subject for it in mem.items("people")}
    first_held = sorted(held)[0]
    checks = iter([first_held] + [None] * 9)  # the first held check misses one item, later ones (and the context probes) none
    rounds = _spy_rounds(monkeypatch, lambda: next(checks))
    report = mem.write(facts[5:], namespace="people")
    new_id = next(it.id for it in mem.items("people") if it.subject == NAMES[5])
    assert len(rounds) == 2, rounds  # the first round, then one repair round for the slipped item
    assert new_id in rounds[0] and len(rounds[0]) == 2  # the new item + 1 replayed
    assert first_held in rounds[1] and new_id in rounds[1]  # the repair trains what slipped, with the new item
    assert report.details["replay"]["repair_rounds"] == 1
    assert report.reached_target and report.slipped == []


@pytest.mark.parametrize("fallback", [True, False])
def test_when_repairs_run_out_one_last_round_replays_every_item(tmp_path, tiny_model_dir, facts, monkeypatch, fallback):
    _open(tmp_path, tiny_model_dir).write(facts[:5], namespace="people")
    # Reopened with a small step cap: the stuck item below never comes back, so every round runs to the cap.
    mem = _open(tmp_path, tiny_model_dir, replay_items=1, repair_rounds=1, full_fallback=fallback, max_steps=12,
                warm_lr_scale=0.25)
    stuck = sorted(it.id for it in mem.items("people"))[0]
    lrs: list[float] = []
    rounds = _spy_rounds(monkeypatch, lambda: stuck, lrs)  # one held item never comes back
    with pytest.warns(RuntimeWarning, match="below target_recall"):
        report = mem.write(facts[5:], namespace="people")
    everything = {it.id for it in mem.items("people")}
    replay = report.details["replay"]
    assert replay["repair_rounds"] == 1 and replay["full_round"] is fallback
    if fallback:  # first round, one repair, then every item: what replay_items=None would have trained
        assert len(rounds) == 3 and len(rounds[0]) == len(rounds[1]) - 1 == 2 and rounds[2] == everything
        # the bounded rounds train at lr x warm_lr_scale, the full round at lr (what a full write trains at)
        assert lrs == pytest.approx([FAST_TRAIN.lr * 0.25] * 2 + [FAST_TRAIN.lr])
    else:
        assert len(rounds) == 2 and lrs == pytest.approx([FAST_TRAIN.lr * 0.25] * 2)
    assert replay["lr_scale"] == 0.25
    assert report.slipped == [stuck] and not report.reached_target


def _always_miss(monkeypatch, item_id: str, full: int = 0):  # type: ignore[no-untyped-def]
    """Every teacher-forced check (train's and the write's) misses the probes of ``item_id``; checks of
    ``full`` probes (the write's check of every held item) recall all the others."""
    real_recall, real_encode = train_mod.exact_recall, train_mod.encode_all
    seen: list[list[Example]] = []

    def spy_encode(examples, *args):  # type: ignore[no-untyped-def]
        seen.append(list(examples))
        return real_encode(examples, *args)

    def fake_recall(model, encoded, *args):  # type: ignore[no-untyped-def]
        hits = real_recall(model, encoded, *args) if len(encoded) != full else [True] * full
        mine = next(s for s in reversed(seen) if len(s) == len(encoded))
        return [h and e.item_id != item_id for h, e in zip(hits, mine)]

    monkeypatch.setattr(train_mod, "exact_recall", fake_recall)
    monkeypatch.setattr(train_mod, "encode_all", spy_encode)


def test_an_item_the_module_never_recalled_is_not_a_slip(tmp_path, tiny_model_dir, facts, monkeypatch):
    """A bounded write is judged against the version it starts from: the one item that version did not recall
    (its commit records it) is reported, not repaired, and costs no repair or full round."""
    mem = _open(tmp_path, tiny_model_dir, replay_items=1, target_recall=0.8)
    never = facts[0].id
    _always_miss(monkeypatch, never)
    first = mem.write(facts[:5], namespace="people")  # 4 of 5 reach the target
    info, = mem.store.modules("people")
    assert info.report["missed"] == [never]  # the commit records what it does not recall
    # Reopened at a target 5 of 6 cannot reach: before, every check below it meant a repair round.
    mem = _open(tmp_path, tiny_model_dir, replay_items=1, target_recall=0.9)
    probes = len([e for e in mem.store.examples("people", [it.id for it in mem.items("people")]) if e.probe])
    _always_miss(monkeypatch, never, full=probes + probes // 5)  # 5 held items' probes + the new one's
    with pytest.warns(RuntimeWarning, match="below target_recall"):
        second = mem.write(facts[5:], namespace="people")
    replay = second.details["replay"]
    assert first.reached_target and not second.reached_target
    assert replay["checks"][0] == {"round": 1, "recall": round(second.recall, 4), "slipped": 0, "new_missed": 0,
                                      "missed": 1}
    assert replay["repair_rounds"] == 0 and not replay["full_round"]
    assert second.slipped == [] and replay["missed"] == 1


def test_a_version_without_a_record_is_checked_before_the_first_round(tmp_path, tiny_model_dir, facts):
    """Stores written before commits recorded ``missed``: one check of the starting version, before round 1."""
    import json
    import sqlite3

    mem = _open(tmp_path, tiny_model_dir, replay_items=2)
    mem.write(facts[:5], namespace="people")
    info, = mem.store.modules("people")
    report = {k: v for k, v in info.report.items() if k != "missed"}
    db = sqlite3.connect(tmp_path / "store" / "manifest.sqlite")
    db.execute("UPDATE versions SET report=? WHERE module_id=? AND version=?",
               (json.dumps(report), info.module_id, info.version))
    db.commit()
    db.close()
    second = mem.write(facts[5:], namespace="people")
    checks = second.details["replay"]["checks"]
    assert checks[0]["round"] == "before" and 0.0 <= checks[0]["recall"] <= 1.0
    assert checks[1]["round"] == 1 and "slipped" in checks[1]


def test_a_bounded_round_trains_at_the_warm_config_and_the_full_round_at_the_given_one():
    from types import SimpleNamespace

    from loramem import TrainConfig
    from loramem.incremental import Incremental

    cfg = TrainConfig(lr=1e-3, min_epochs=15, warm_min_epochs=3, warm_lr_scale=0.5, replay_items=1)
    ex = [Example(item_id=i, format="qa", prompt="q", completion="a", probe=True) for i in "abc"]
    inc = Incremental(SimpleNamespace(), cfg, {"a", "b"}, ex, ex[2:], bounded=True, missed_before=["b"])
    assert inc.before == {"a"}
    first = inc.first_round()  # c (new) + 1 of a, b replayed: only the new item is probed during the round
    assert {e.item_id for e in first if e.probe} == {"c"} and len(first) == 2
    assert {e.item_id: e.probe for e in inc._round(["a"])}["a"]  # a slipped item is probed in its repair round
    warm = inc.round_config(cfg)
    assert (warm.lr, warm.min_epochs) == (pytest.approx(5e-4), 3)
    inc.fell_back = True
    assert inc.round_config(cfg) is cfg
    assert Incremental(SimpleNamespace(), cfg, {"a", "b"}, ex, ex[2:], bounded=False).round_config(cfg) is cfg


def test_a_write_below_target_commits_with_a_warning_naming_what_slipped(tmp_path, tiny_model_dir, facts):
    mem = _open(tmp_path, tiny_model_dir, max_steps=1, min_epochs=0, repair_rounds=0)
    with pytest.warns(RuntimeWarning, match="below target_recall"):
        report = mem.write(facts, namespace="people")
    assert not report.reached_target and report.version == 1
    assert report.slipped and set(report.slipped) <= {it.id for it in mem.items("people")}
    assert "not recalled" in report.summary()


def test_recalled_items_are_mostly_skipped_in_the_next_pass(tiny_model_dir, monkeypatch):
    from loramem import LoraSpec, ModelConfig, TrainConfig, models
    from loramem.prompts import PromptFormat
    from loramem.synth import synthesize
    from loramem.train import peft_config

    facts = [Fact(n, "favourite colour", c) for n, c in zip(NAMES, COLOURS)]
    examples = synthesize(facts, SynthConfig(qa_paraphrases=1, context_mix=False))
    model, tok = models.load(ModelConfig(name=str(tiny_model_dir)))
    from peft import get_peft_model

    peft = get_peft_model(model, peft_config(model, LoraSpec(r=4)), adapter_name="m")
    batches: list[set[int]] = []
    real_collate = train_mod.collate

    def spy_collate(encoded, rows, pad_id, device=None):  # type: ignore[no-untyped-def]
        if len(encoded) == len(examples):  # training batches (not the checks' or the preservation's)
            batches.append({i for row in rows for i in row})
        return real_collate(encoded, rows, pad_id, device)

    kept = facts[0].id
    monkeypatch.setattr(train_mod, "collate", spy_collate)
    monkeypatch.setattr(train_mod, "exact_recall",
                        lambda model, encoded, *a: [e.item_id != kept for e in examples if e.probe])
    cfg = TrainConfig(max_steps=6, min_epochs=1, recalled_replay=0.0, progress=False, seq_len=128,
                      batch_tokens=4096, target_recall=1.0)
    result = train_mod.train(peft, PromptFormat(tok), examples, cfg, adapter_name="m")
    assert len(batches) == result.steps == 6
    assert batches[0] == set(range(len(examples)))  # before the first check: every example
    assert all(b == {0} for b in batches[1:])  # after it: only the item not recalled (example 0 is facts[0]'s)
    assert result.recalled == {f.id for f in facts[1:]}


def test_an_update_of_values_trains_warm_and_a_forget_rebuilds_fresh(tmp_path, tiny_model_dir, facts, monkeypatch):
    from loramem import writing

    mem = _open(tmp_path, tiny_model_dir, replay_items=2)
    mem.write(facts, namespace="people")
    calls: list[tuple[bool, list[str]]] = []
    real = writing.write_module

    def spy(rt, namespace, a, new_examples, tcfg, scfg, **kw):  # type: ignore[no-untyped-def]
        calls.append((kw.get("fresh", False), [e.prompt for e in new_examples]))
        return real(rt, namespace, a, new_examples, tcfg, scfg, **kw)

    monkeypatch.setattr("loramem.edits.write_module", spy)
    old_prompts = {e.prompt for e in mem.store.examples("people", [facts[1].id]) if e.trained}
    report = mem.update(Fact(NAMES[1], "favourite colour", "black"), namespace="people")
    (fresh, prompts), = calls
    assert not fresh and report.details["replay"]["bounded"]  # warm, from the current version, a bounded replay
    assert old_prompts <= set(prompts)  # every question the old value was trained on now has the new value
    assert report.details["verify"]["passed"] and report.details["verify"]["removed_recall"] == 0.0
    assert mem.ask(facts[1].canonical_question, "people").text == "black"
    calls.clear()
    mem.forget(facts[2].id, namespace="people")
    assert calls[0][0] is True  # a plain forget: fresh weights, so nothing of the item is carried over


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5])
def test_warm_lr_scale_outside_0_1_is_refused(scale):  # type: ignore[no-untyped-def]
    from loramem import TrainConfig

    with pytest.raises(ValueError, match=r"warm_lr_scale: expected a float in \(0, 1\]"):
        TrainConfig(warm_lr_scale=scale)
