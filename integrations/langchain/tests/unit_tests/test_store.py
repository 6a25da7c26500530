"""LoRAMemoryStore: the exact layer (no model needed) and the consolidation round trip on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.base import InvalidNamespaceError

from langchain_loramem import ChatLoRAMemory, LoRAMemoryStore, memory_namespace, value_to_item
from langchain_loramem.chat_models import shared_memory

from ..conftest import TINY_LORA, TINY_TRAIN


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        (("users", "alice", "facts"), "users.alice.facts"),
        (("u-1", "x:y"), "u-1.x:y"),
        (("has space",), None),
        (("-leading",), None),
        (("a" * 200,), None),
    ],
)
def test_memory_namespace(namespace: tuple[str, ...], expected: str | None) -> None:
    from loramem.store import check_namespace

    name = memory_namespace(namespace)
    assert check_namespace(name) == name
    if expected is not None:
        assert name == expected
    else:
        assert "@" in name and name == memory_namespace(namespace)  # hashed form, deterministic
    assert memory_namespace(("a", "b")) != memory_namespace(("a:b",))


def test_value_to_item() -> None:
    from loramem import Document, Fact

    fact = value_to_item({"subject": "Ann", "relation": "city", "object": "Oslo"}, ("u",), "k")
    assert isinstance(fact, Fact) and fact.canonical_question == "What is the city of Ann?"
    doc = value_to_item({"text": "Ann moved to Oslo.", "title": "moves"}, ("u",), "k")
    assert isinstance(doc, Document) and doc.title == "moves"
    other = value_to_item({"likes": ["tea"]}, ("u",), "k")
    assert isinstance(other, Document) and '"likes"' in other.text


def test_exact_layer(tmp_path: Path) -> None:
    store = LoRAMemoryStore(tmp_path / "mem", "unused-model")  # nothing here loads a model
    ns = ("users", "alice")
    store.put(ns, "a", {"text": "Alice likes green tea", "n": 1})
    store.put(ns, "b", {"text": "Alice lives in Oslo", "n": 5})
    store.put(("users", "bob"), "c", {"text": "Bob likes coffee", "n": 3})
    item = store.get(ns, "a")
    assert (
        item is not None and item.value == {"text": "Alice likes green tea", "n": 1} and item.namespace == ns
    )
    assert store.get(ns, "missing") is None

    hits = store.search(("users",), query="green tea")
    assert [h.key for h in hits][0] == "a" and hits[0].score == 1.0
    assert {h.key for h in store.search(("users",), filter={"n": {"$gte": 3}})} == {"b", "c"}
    assert [h.key for h in store.search(("users", "bob"))] == ["c"]
    assert len(store.search(("users",), limit=1, offset=1)) == 1

    assert store.list_namespaces() == [("users", "alice"), ("users", "bob")]
    assert store.list_namespaces(prefix=("users",), max_depth=1) == [("users",)]
    assert store.list_namespaces(suffix=("bob",)) == [("users", "bob")]
    assert sorted(store.pending()) == [
        (("users", "alice"), "a"),
        (("users", "alice"), "b"),
        (("users", "bob"), "c"),
    ]

    store.put(ns, "kept", {"text": "not for training"}, index=False)
    assert (ns, "kept") not in store.pending() and store.get(ns, "kept") is not None
    store.delete(ns, "a")  # never consolidated: nothing to forget, no model needed
    assert store.get(ns, "a") is None and (ns, "a") not in store.pending()
    with pytest.raises(InvalidNamespaceError):
        store.put(("bad.label",), "k", {"text": "x"})
    with pytest.raises(NotImplementedError):
        store.put(ns, "t", {"text": "x"}, ttl=5)

    reopened = LoRAMemoryStore(tmp_path / "mem", "unused-model")  # the exact layer is durable
    assert reopened.get(ns, "b") is not None and len(reopened.pending()) == 2


async def test_async_exact_layer(tmp_path: Path) -> None:
    store = LoRAMemoryStore(tmp_path / "mem", "unused-model")
    await store.aput(("u",), "k", {"text": "hello"})
    item = await store.aget(("u",), "k")
    assert item is not None and item.value["text"] == "hello"
    assert [h.key for h in await store.asearch(("u",), query="hello")] == ["k"]
    await store.adelete(("u",), "k")
    assert await store.aget(("u",), "k") is None


def test_consolidate_answer_forget_update(tmp_path: Path, tiny_model: str) -> None:
    path = tmp_path / "mem"
    store = LoRAMemoryStore(path, tiny_model, consolidate_every=3, train=TINY_TRAIN, lora=TINY_LORA)
    ns = ("user_1", "facts")
    store.put(ns, "colour", {"subject": "Alma Vance", "relation": "favourite colour", "object": "blue"})
    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Paris"})
    assert len(store.pending()) == 2  # below consolidate_every: only queued
    store.put(ns, "pet", {"subject": "Cleo Ward", "relation": "pet", "object": "a cat"})
    assert store.pending() == []  # the third put consolidated all three into a LoRA module

    mem_ns = store.memory_namespace(ns)
    llm = ChatLoRAMemory(model_name=tiny_model, store_path=str(path), namespace=mem_ns, max_tokens=16)
    questions = ["What is the favourite colour of Alma Vance?", "What is the home city of Bob Stone?"]
    assert [m.content for m in llm.batch(list[Any](questions))] == ["blue", "Paris"]

    mem = store.memory
    assert mem is shared_memory(path, tiny_model)  # the chat model answers from the very same memory
    colour_id = value_to_item(store.get(ns, "colour").value, ns, "colour").id  # type: ignore[union-attr]
    assert colour_id in {it.id for it in mem.items(mem_ns)}
    store.delete(ns, "colour")  # consolidated: the module is rebuilt without it
    assert store.get(ns, "colour") is None
    assert colour_id not in {it.id for it in mem.items(mem_ns)}
    assert mem.ls(mem_ns)[0].version == 2
    assert llm.invoke(questions[1]).content == "Paris"

    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Rome"})  # an update
    assert store.pending() == [(ns, "city")]
    reports = store.consolidate()
    assert len(reports) == 1 and reports[0].recall == 1.0
    objects = sorted(it.object for it in mem.items(mem_ns))  # type: ignore[union-attr]
    assert objects == ["Rome", "a cat"]  # the overwritten value was forgotten, the new one written
    assert llm.invoke(questions[1]).content == "Rome"


def _fail_first_forget(mem: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make this memory's first forget() raise (a rebuild that fails); returns the calls made."""
    real_forget, calls = mem.forget, []

    def forget_fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("rebuild failed")
        return real_forget(*args, **kwargs)

    monkeypatch.setattr(mem, "forget", forget_fails_once)
    return calls


def test_a_failed_forget_is_recorded_and_retried(
    tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mem"
    store = LoRAMemoryStore(path, tiny_model, train=TINY_TRAIN, lora=TINY_LORA)
    ns = ("user_2",)
    store.put(ns, "colour", {"subject": "Alma Vance", "relation": "favourite colour", "object": "blue"})
    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Paris"})
    store.consolidate()
    mem, mem_ns = store.memory, store.memory_namespace(ns)
    colour_id = value_to_item(store.get(ns, "colour").value, ns, "colour").id  # type: ignore[union-attr]

    calls = _fail_first_forget(mem, monkeypatch)  # this memory instance only
    with pytest.raises(RuntimeError, match="rebuild failed"):
        store.delete(ns, "colour")
    assert store.get(ns, "colour") is None  # the key is gone at once...
    assert colour_id in {it.id for it in mem.items(mem_ns)}  # ...its item is still in the module...
    reopened = LoRAMemoryStore(path, tiny_model, train=TINY_TRAIN, lora=TINY_LORA)
    assert reopened.pending_forgets() == [(mem_ns, colour_id)]  # ...and the forget is recorded, durably
    assert reopened.consolidate() == []  # nothing queued to write, but the forget is retried
    assert len(calls) == 2 and reopened.pending_forgets() == []
    assert colour_id not in {it.id for it in mem.items(mem_ns)}
    assert [it.subject for it in mem.items(mem_ns)] == ["Bob Stone"]  # type: ignore[union-attr]


def test_a_failed_forget_is_retried_by_the_next_write(
    tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LoRAMemoryStore(tmp_path / "mem", tiny_model, train=TINY_TRAIN, lora=TINY_LORA)
    ns = ("user_3",)
    store.put(ns, "pet", {"subject": "Cleo Ward", "relation": "pet", "object": "a cat"})
    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Paris"})
    store.consolidate()
    mem, mem_ns = store.memory, store.memory_namespace(ns)
    calls = _fail_first_forget(mem, monkeypatch)
    with pytest.raises(RuntimeError):
        store.delete(ns, "pet")
    store.get(ns, "city")  # reads never retrain
    assert len(calls) == 1 and store.pending_forgets()
    store.put(ns, "note", {"text": "kept only"}, index=False)  # a writing batch retries the forget
    assert len(calls) == 2 and store.pending_forgets() == []
    assert {it.subject for it in mem.items(mem_ns)} == {"Bob Stone"}  # type: ignore[union-attr]


def test_keys_are_recorded_under_the_module_that_holds_them(tmp_path: Path, tiny_model: str) -> None:
    import sqlite3

    from loramem import CapacityModel, PlanConfig

    store = LoRAMemoryStore(tmp_path / "mem", tiny_model, train=TINY_TRAIN)
    mem = store.memory
    points = [  # r2 holds 8 knowledge tokens: these six facts need several modules
        {"r": 2, "entries": 4, "knowledge_tokens": 8, "trainable_params": 1000, "recall": 1.0},
        {"r": 8, "entries": 8, "knowledge_tokens": 16, "trainable_params": 4000, "recall": 1.0},
        {"r": 8, "entries": 16, "knowledge_tokens": 32, "trainable_params": 4000, "recall": 0.2},
    ]
    mem.capacity = CapacityModel(base_model="tiny", base_fingerprint=None, threshold=0.9, points=points)
    mem.plan_config = PlanConfig(fill=1.0)
    ns = ("user_4",)
    people = {"Alma": "blue", "Bram": "red", "Cora": "green", "Dace": "Paris", "Eira": "Rome", "Fitz": "Berlin"}
    for i, (name, obj) in enumerate(people.items()):
        relation = "favourite colour" if i < 3 else "home town"
        store.put(ns, name, {"subject": name, "relation": relation, "object": obj})
    report = store.consolidate()[0]
    assert len(report.parts) >= 2  # the planner split the namespace
    mem_ns = store.memory_namespace(ns)
    holder = {
        item_id: (info.module_id, info.version)
        for info in mem.ls(mem_ns)
        for item_id in mem.store.module_items(info.module_id, info.version)
    }
    db = sqlite3.connect(store.kv_path)
    rows = db.execute("SELECT key, item_ids, module_id, module_version FROM kv").fetchall()
    assert len(rows) == 6 and len({r[2] for r in rows}) >= 2
    for key, ids, module_id, version in rows:
        assert holder[json.loads(ids)[0]] == (module_id, version), key
