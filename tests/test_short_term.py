"""Short-term memory on the tiny model: remember (durable, answerable at once, no training), forget and update
of pending items without training, consolidation through the write path, the background consolidator, and reads
that run between a write's training steps."""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings

import pytest
from conftest import FAST_LORA, FAST_SYNTH, FAST_TRAIN, NAMES

from loramem import (
    ConsolidationError,
    ConsolidationPolicy,
    Document,
    Fact,
    KnowledgeMemory,
    PendingChangedError,
    ReadConfig,
)

BARE = dataclasses.replace(FAST_SYNTH, context_mix=False)


def _open(path, tiny_model_dir, **train):  # type: ignore[no-untyped-def]
    return KnowledgeMemory.open(path, model=str(tiny_model_dir), lora=FAST_LORA, synth=BARE,
                                train=dataclasses.replace(FAST_TRAIN, **train))


@pytest.fixture
def trained(monkeypatch):  # type: ignore[no-untyped-def]
    """Every module version trained, as (namespace, item ids it trained on)."""
    from loramem import writing

    calls: list[tuple[str, set[str]]] = []
    real = writing.write_module

    def spy(rt, namespace, a, new_examples, *args, **kw):  # type: ignore[no-untyped-def]
        calls.append((namespace, {e.item_id for e in new_examples}))
        return real(rt, namespace, a, new_examples, *args, **kw)

    monkeypatch.setattr(writing, "write_module", spy)
    monkeypatch.setattr("loramem.edits.write_module", spy)
    return calls


def test_remembered_items_are_durable_and_answered_from_the_buffer_without_training(tmp_path, tiny_model_dir, facts,
                                                                                      trained):
    mem = _open(tmp_path / "s", tiny_model_dir)
    ids = mem.remember([*facts[:3], "Alma's cat is called Miso."], namespace="people")
    assert ids[:3] == [f.id for f in facts[:3]] and ids[3].startswith("doc-")
    assert mem.remember(facts[0], namespace="people") == [facts[0].id]  # again: a no-op
    assert [p.id for p in mem.pending("people")] == ids and not mem.ls("people") and not trained
    mem.close()
    mem = _open(tmp_path / "s", tiny_model_dir)  # a new process would see the same: the rows are committed
    assert [p.id for p in mem.pending("people")] == ids
    assert mem.status()["pending"]["people"]["items"] == 4
    answer = mem.ask(facts[1].canonical_question, namespace="people")
    assert facts[1].id in answer.details["pending"] and answer.reader == "base+pending"
    assert answer.details["pending"][0] == facts[1].id or len(answer.details["pending"]) <= ReadConfig().pending_k
    mem.read_config = dataclasses.replace(mem.read_config, pending_k=0)  # the buffer can be switched off
    assert "pending" not in mem.ask(facts[1].canonical_question, namespace="people").details
    assert not trained


def test_the_context_of_a_pending_item_is_the_shared_layout(tmp_path, tiny_model_dir, facts, monkeypatch):
    from loramem.text import render_context

    mem = _open(tmp_path / "s", tiny_model_dir)
    mem.remember(facts[:2], namespace="people")
    seen: list[str | None] = []
    real = mem.prompt_format.prompt
    monkeypatch.setattr(mem.prompt_format, "prompt", lambda q, c=None: seen.append(c) or real(q, c))
    answer = mem.ask(facts[0].canonical_question, namespace="people", context="Given text.")
    by_id = {f.id: f for f in facts}
    expected = render_context([by_id[i] for i in answer.details["pending"]]) + "\nGiven text."
    assert expected in seen  # the buffer's context first, then the caller's, in the one context layout


def test_forget_and_update_of_pending_items_train_nothing(tmp_path, tiny_model_dir, facts, trained):
    mem = _open(tmp_path / "s", tiny_model_dir)
    mem.remember(facts[:3], namespace="people")
    assert mem.forget(facts[2].id, namespace="people") is None
    assert mem.forget([facts[1].id]) is None  # the namespace is found
    assert mem.update(Fact(NAMES[0], "favourite colour", "black"), namespace="people") is None
    assert [p.item.object for p in mem.pending("people")] == ["black"]
    # A remembered item with the key of a pending one replaces it, as update does; metadata["key"] first.
    mem.remember(Document("v1", metadata={"key": "note"}), namespace="people")
    mem.remember(Document("v2", metadata={"key": "note"}), namespace="people")
    assert [getattr(p.item, "text", None) for p in mem.pending("people")][-1] == "v2"
    assert len(mem.pending("people")) == 2 and not trained
    mem.consolidate()
    held = {it.id for it in mem.items("people")}
    assert facts[1].id not in held and facts[2].id not in held  # forgotten before training: never trained on
    assert all(facts[1].id not in ids and facts[2].id not in ids for _, ids in trained)


def test_consolidation_moves_the_buffer_into_a_module_and_a_held_key_becomes_an_update(tmp_path, tiny_model_dir,
                                                                                      facts, trained):
    mem = _open(tmp_path / "s", tiny_model_dir)
    mem.remember(facts[:3], namespace="people")
    reports = mem.consolidate()
    assert len(reports) == 1 and reports[0].version == 1 and reports[0].details["consolidated"]["items"] == 3
    assert mem.pending() == [] and {it.id for it in mem.items("people")} == {f.id for f in facts[:3]}
    assert mem.consolidate() == []  # nothing pending: nothing trained
    mem.remember(Fact(NAMES[1], "favourite colour", "white"), namespace="people")
    (report,) = mem.consolidate("people")
    assert report.version == 2 and "verify" in report.details  # through update: the old value is removed
    objects = sorted(it.object for it in mem.items("people") if isinstance(it, Fact))
    assert objects == sorted(["blue", "white", "green"])


def test_an_item_forgotten_while_its_consolidation_trains_is_not_committed(tmp_path, tiny_model_dir, facts,
                                                                            monkeypatch):
    from loramem import store as store_mod
    from loramem import writing

    mem = _open(tmp_path / "s", tiny_model_dir)
    mem.remember(facts[:3], namespace="people")
    real = writing.write_module
    commits: list[set[str]] = []
    real_commit = store_mod.ModuleStore.commit_version

    def forget_meanwhile(rt, namespace, a, new_examples, *args, **kw):  # type: ignore[no-untyped-def]
        if not commits:  # the first attempt: another thread forgets an item while this one trains
            threading.Thread(target=mem.forget, args=(facts[0].id, "people")).start()
            time.sleep(0.2)
        return real(rt, namespace, a, new_examples, *args, **kw)

    def spy_commit(self, **kw):  # type: ignore[no-untyped-def]
        commits.append(set(kw["held_item_ids"]))
        return real_commit(self, **kw)

    monkeypatch.setattr(writing, "write_module", forget_meanwhile)
    monkeypatch.setattr(store_mod.ModuleStore, "commit_version", spy_commit)
    (report,) = mem.consolidate()
    assert len(commits) == 2 and facts[0].id in commits[0]  # the first version was refused ...
    assert {it.id for it in mem.items("people")} == {f.id for f in facts[1:3]}  # ... the second holds the rest
    assert mem.pending() == [] and report.version == 1


def test_a_pending_row_claimed_by_a_consolidation_is_a_tombstone_until_released(tmp_path):
    from loramem import pending
    from loramem.store import ModuleStore

    store = ModuleStore(tmp_path / "s")
    items = [Document("one"), Document("two")]
    pending.add(store, "ns", items, ["one", "two"], None, {})
    token, rows = pending.claim(store, "ns")
    assert [r.id for r in rows] == [it.id for it in items] and all(r.claimed for r in rows)
    assert pending.drop(store, "ns", [items[0].id]) == [items[0].id]
    assert [r.id for r in pending.items(store, "ns")] == [items[1].id]  # gone for readers at once
    with pytest.raises(PendingChangedError, match="forgotten or replaced"):
        store.commit_version(module_id="m", namespace="ns", adapter_config=_Cfg(), state={}, base_model="b",
                             base_fingerprint="f", lora_spec={}, trainable_params=0, knowledge_tokens=0, recall=1.0,
                             report={}, new_items=items, new_examples=[], held_item_ids=[it.id for it in items])
    assert store.modules() == []  # the refused version is not visible
    pending.release(store, token)
    assert [(r.id, r.claimed) for r in pending.items(store, "ns")] == [(items[1].id, False)]


class _Cfg:
    def save_pretrained(self, folder: str) -> None:
        import json
        import os

        with open(os.path.join(folder, "adapter_config.json"), "w") as fh:
            json.dump({}, fh)


def test_the_consolidator_runs_by_policy_surfaces_errors_and_retries(tmp_path, tiny_model_dir, facts, monkeypatch):
    mem = _open(tmp_path / "s", tiny_model_dir)
    calls = {"n": 0}
    real = mem.consolidate

    def flaky(namespace=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real(namespace)

    monkeypatch.setattr(mem, "consolidate", flaky)
    worker = mem.start_consolidator(ConsolidationPolicy(max_items=2, max_age_s=None, poll_s=0.05, retry_s=0.1))
    with pytest.raises(RuntimeError, match="already runs"):
        mem.start_consolidator()
    mem.remember(facts[0], namespace="people")
    time.sleep(0.3)
    assert calls["n"] == 0  # one item: below the count trigger
    mem.remember(facts[1], namespace="people")
    deadline = time.time() + 60
    while mem.pending() and time.time() < deadline:
        time.sleep(0.05)
    assert mem.pending() == [] and calls["n"] == 2  # failed once, retried after the backoff, then done
    status = mem.status()["consolidator"]
    assert status["errors"] == 1 and "disk full" in status["last_error"]["error"]
    assert status["consolidated_versions"] == 1
    mem.remember(facts[2], namespace="people")  # below the trigger: flush() does it now
    (report,) = worker.flush(timeout=60)
    assert report.items_total == 3 and mem.pending() == []
    calls["n"] = 0
    mem.remember(facts[3], namespace="people")
    with pytest.raises(ConsolidationError, match="disk full"):
        worker.flush(timeout=60)  # a flush that fails says so; the item stays pending
    assert [p.id for p in mem.pending()] == [facts[3].id]
    worker.stop()
    assert not worker.running and mem.status()["consolidator"]["state"] == "stopped"


def test_reads_run_between_the_training_steps_of_a_write(tmp_path, tiny_model_dir, facts):
    mem = _open(tmp_path / "s", tiny_model_dir)
    mem.write(facts[:2], namespace="people")
    first = mem.ls("people")[0]
    mem.remember(facts[2:], namespace="people")
    # A long consolidation: no recall check before the step cap, so it trains every one of its steps.
    mem.train_config = dataclasses.replace(mem.train_config, min_epochs=10_000, max_steps=400)
    loaded: list[str] = []
    real_load = mem.adapters.load
    mem.adapters.load = lambda info, pinned=None: loaded.append(f"v{info.version}") or real_load(info, pinned)
    worker = threading.Thread(target=mem.consolidate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # whether 120 steps reach the target does not matter here
        worker.start()
        while not mem._lock.held and worker.is_alive():  # until the consolidation holds the model
            time.sleep(0.001)
        latencies, during = [], []
        while worker.is_alive() and len(latencies) < 5:
            t0 = time.perf_counter()
            answer = mem.ask(facts[2].canonical_question, namespace="people")
            latencies.append(time.perf_counter() - t0)
            during.append(worker.is_alive())
            assert facts[2].id in answer.details["pending"]  # not consolidated yet: answered from the buffer
        worker.join()
    assert sum(during) >= 3, "reads waited for the write to finish"
    assert mem._lock.handovers >= 3 and set(loaded) == {f"v{first.version}"}  # the old version until the commit
    assert mem.ls("people")[0].version == first.version + 1 and mem.pending() == []
    answer = mem.ask(facts[2].canonical_question, namespace="people")
    assert "pending" not in answer.details and loaded[-1] == f"v{first.version + 1}"


def test_chat_reads_the_buffer_before_the_last_user_message(tmp_path, tiny_model_dir, facts, monkeypatch):
    mem = _open(tmp_path / "s", tiny_model_dir)
    mem.remember(facts[:2], namespace="people")
    seen: list[list[dict[str, str]]] = []
    real = mem.prompt_format.render
    monkeypatch.setattr(mem.prompt_format, "render", lambda conv: seen.append(conv) or real(conv))
    conversation = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": facts[1].canonical_question}]
    (answer,) = mem.chat([conversation], namespace="people")
    assert facts[1].id in answer.details["pending"]
    assert seen[-1][:2] == conversation[:2] and seen[-1][2]["content"].endswith("\n\n" + facts[1].canonical_question)


def test_a_claimed_item_remembered_again_with_other_metadata_refuses_the_commit(tmp_path):
    from loramem import pending
    from loramem.store import ModuleStore

    store = ModuleStore(tmp_path / "s")
    old = Document("same text", metadata={"value": 1})
    pending.add(store, "ns", [old], ["same text"], None, {})
    token, _ = pending.claim(store, "ns")
    pending.drop(store, "ns", [old.id])
    new = Document("same text", metadata={"value": 2})  # the same content id, another value
    pending.add(store, "ns", [new], ["same text"], None, {})
    assert [p.item.metadata for p in pending.items(store, "ns")] == [{"value": 2}]
    with pytest.raises(PendingChangedError):
        store.commit_version(module_id="m", namespace="ns", adapter_config=_Cfg(), state={}, base_model="b",
                             base_fingerprint="f", lora_spec={}, trainable_params=0, knowledge_tokens=0, recall=1.0,
                             report={}, new_items=[old], new_examples=[], held_item_ids=[old.id])


@pytest.mark.parametrize(("old", "new", "same"), [
    (Document("a", title="T", metadata={"key": "k"}), Document("b", title="U", metadata={"key": "k"}), True),
    (Document("a", title="T", metadata={"key": "k"}), Document("b", title="T"), False),  # a key is the identity
    (Document("a", title="T"), Document("b", title="T"), True),
    (Fact("A", "r", "1"), Fact("A", "r", "2", metadata={"key": "x"}), False),
])
def test_same_key(old, new, same):  # type: ignore[no-untyped-def]
    from loramem.edits import same_key

    assert same_key(old, new) is same
