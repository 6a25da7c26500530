"""LoRAMemoryStore over the core's short-term memory: exact answers from the buffer and the modules (no
language model needed), and the consolidation round trip on the tiny model."""

from __future__ import annotations

import warnings
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


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every module write (``loramem.writing.write_module``, also as the edit room imported it) is recorded
    and refused: a test using this fixture asserts that nothing trains."""
    import loramem.edits
    import loramem.writing

    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("write_module called: something trained")

    monkeypatch.setattr(loramem.writing, "write_module", refuse)
    monkeypatch.setattr(loramem.edits, "write_module", refuse)
    return calls


def test_values_live_in_the_core(tmp_path: Path, no_training: list[Any]) -> None:
    path = tmp_path / "mem"
    store = LoRAMemoryStore(path, "unused-model")  # nothing here loads a language model
    mem = store.memory
    ns = ("users", "alice")
    mem_ns = store.memory_namespace(ns)
    store.put(ns, "a", {"text": "Alice likes green tea", "n": 1})
    store.put(ns, "b", {"text": "Alice lives in Oslo", "n": 5})
    store.put(("users", "bob"), "c", {"text": "Bob likes coffee", "n": 3})
    store.put(("teams",), "d", {"text": "The red team meets on Mondays", "n": 9})

    # Each put is one pending item of the core, carrying its key and exact value.
    pending = mem.pending(mem_ns)
    assert [p.item.metadata["key"] for p in pending] == ["a", "b"]
    assert pending[0].item.metadata["value"] == {"text": "Alice likes green tea", "n": 1}
    assert pending[0].item.text == "Alice likes green tea"  # type: ignore[union-attr]
    assert mem.items(mem_ns) == []  # nothing consolidated
    assert not (path / "langgraph_store.sqlite").exists()  # no database of the store's own

    item = store.get(ns, "a")
    assert item is not None and item.value == {"text": "Alice likes green tea", "n": 1} and item.namespace == ns
    assert item.created_at == item.updated_at
    assert store.get(ns, "missing") is None and store.get(("users", "carol"), "a") is None

    # Search ranks by cosine similarity on the core's embedder, within the prefix, after the filter.
    hits = store.search(("users",), query="Which hot drink made from leaves does Alice enjoy?")
    assert [h.key for h in hits] == ["a", "c", "b"] and 0 < hits[0].score < 1  # type: ignore[operator]
    assert hits[0].score > hits[1].score > hits[2].score  # type: ignore[operator]
    assert [h.key for h in store.search(("users",), query="coffee", limit=1)] == ["c"]
    assert {h.key for h in store.search(("users",), filter={"n": {"$gte": 3}})} == {"b", "c"}
    assert {h.key for h in store.search((), filter={"n": {"$gte": 3}})} == {"b", "c", "d"}
    assert [h.key for h in store.search(("users", "bob"))] == ["c"]
    assert [h.key for h in store.search(("users",), query="tea", filter={"n": 5})] == ["b"]
    assert len(store.search(("users",), limit=1, offset=1)) == 1 and store.search(("nobody",)) == []
    assert all(h.score is None for h in store.search(("users",)))

    assert store.list_namespaces() == [("teams",), ("users", "alice"), ("users", "bob")]
    assert store.list_namespaces(prefix=("users",)) == [("users", "alice"), ("users", "bob")]
    assert store.list_namespaces(prefix=("users",), max_depth=1) == [("users",)]
    assert store.list_namespaces(suffix=("bob",)) == [("users", "bob")]
    assert store.list_namespaces(prefix=("users", "*")) == [("users", "alice"), ("users", "bob")]
    assert store.list_namespaces(limit=1, offset=1) == [("users", "alice")]
    assert store.pending() == [(ns, "a"), (ns, "b"), (("users", "bob"), "c"), (("teams",), "d")]

    # Overwriting a pending key replaces its item (the core's same-key rule); created_at stays.
    store.put(ns, "a", {"text": "Alice likes black coffee", "n": 2})
    assert [p.item.metadata["key"] for p in mem.pending(mem_ns)] == ["b", "a"]
    again = store.get(ns, "a")
    assert again is not None and again.value["n"] == 2
    assert again.created_at == item.created_at and again.updated_at > item.updated_at
    # ... also when only a field the item does not use changes (same item, new metadata).
    store.put(ns, "b", {"text": "Alice lives in Oslo", "n": 6})
    assert len(mem.pending(mem_ns)) == 2 and store.get(ns, "b").value["n"] == 6  # type: ignore[union-attr]

    # index=False: kept (and consolidated like the rest), but not ranked by a query.
    store.put(ns, "kept", {"text": "Alice likes black coffee a lot"}, index=False)
    assert (ns, "kept") in store.pending()
    assert mem.pending(mem_ns)[-1].item.metadata["index"] is False
    ranked = store.search(ns, query="Alice likes black coffee a lot")
    assert [h.key for h in ranked][-1] == "kept" and ranked[-1].score is None
    assert all(h.score is not None for h in ranked[:-1])

    # One namespace holds an item once: the same value under another key is refused, not silently lost.
    with pytest.raises(ValueError, match="under key 'b'"):
        store.put(ns, "b2", {"text": "Alice lives in Oslo"})
    assert store.get(ns, "b2") is None

    # Deleting a pending key drops it from the buffer: nothing trains.
    store.delete(ns, "a")
    assert store.get(ns, "a") is None and (ns, "a") not in store.pending()
    assert [p.item.metadata["key"] for p in mem.pending(mem_ns)] == ["b", "kept"]
    store.delete(ns, "never-there")  # a no-op, as in every BaseStore
    assert no_training == []

    with pytest.raises(InvalidNamespaceError):
        store.put(("bad.label",), "k", {"text": "x"})
    with pytest.raises(NotImplementedError):
        store.put(ns, "t", {"text": "x"}, ttl=5)
    with pytest.raises(TypeError, match="dict"):
        store.put(ns, "t", "not a dict")  # type: ignore[arg-type]

    # Durable in the core: a new memory on the same folder (another model name: another KnowledgeMemory).
    reopened = LoRAMemoryStore(path, "another-unused-model")
    assert reopened.memory is not mem
    assert reopened.get(ns, "b") is not None and len(reopened.pending()) == 4
    assert reopened.list_namespaces() == store.list_namespaces()


def test_deprecated_kv_path_and_policy(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="kv_path"):
        store = LoRAMemoryStore(tmp_path / "mem", "unused-model", kv_path=tmp_path / "kv.sqlite")
    assert store.policy is None
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "langgraph_store.sqlite").write_bytes(b"")
    with pytest.warns(UserWarning, match="no longer read"):
        LoRAMemoryStore(tmp_path / "old", "unused-model")
    policy = LoRAMemoryStore(tmp_path / "p", "unused-model", consolidate_every=3, consolidate_tokens=50).policy
    assert policy is not None and (policy.max_items, policy.max_tokens, policy.max_age_s) == (3, 50, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LoRAMemoryStore(tmp_path / "quiet", "unused-model")
    with pytest.raises(ValueError, match="consolidate_every"):
        LoRAMemoryStore(tmp_path / "p", "unused-model", consolidate_every=0)


async def test_async_api(tmp_path: Path) -> None:
    store = LoRAMemoryStore(tmp_path / "mem", "unused-model")
    await store.aput(("u",), "k", {"text": "hello"})
    item = await store.aget(("u",), "k")
    assert item is not None and item.value["text"] == "hello"
    assert [h.key for h in await store.asearch(("u",), query="hello")] == ["k"]
    assert await store.alist_namespaces() == [("u",)]
    await store.adelete(("u",), "k")
    assert await store.aget(("u",), "k") is None and await store.alist_namespaces() == []


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


def test_consolidate_answer_forget_update(
    tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mem"
    store = LoRAMemoryStore(path, tiny_model, consolidate_every=3, train=TINY_TRAIN, lora=TINY_LORA)
    mem, ns = store.memory, ("user_1", "facts")
    mem_ns = store.memory_namespace(ns)
    store.put(ns, "colour", {"subject": "Alma Vance", "relation": "favourite colour", "object": "blue"})
    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Paris"})
    assert len(store.pending()) == 2 and mem.ls(mem_ns) == []  # below consolidate_every: only remembered
    # Answerable before consolidation: the core's ask puts the pending value in the question's context.
    answer = mem.ask("What is the home city of Bob Stone?", namespace=mem_ns)
    city_id = mem.pending(mem_ns)[1].id
    assert city_id in answer.details["pending"] and answer.reader.endswith("+pending")

    store.put(ns, "pet", {"subject": "Cleo Ward", "relation": "pet", "object": "a cat"})
    assert store.pending() == []  # the third put met the policy: the namespace was consolidated
    assert sorted(it.metadata["key"] for it in mem.items(mem_ns)) == ["city", "colour", "pet"]
    got = store.get(ns, "city")  # answered from the consolidated item now
    assert got is not None and got.value["object"] == "Paris"
    assert {h.key for h in store.search(ns, query="Where does Bob Stone live?", limit=1)} == {"city"}

    llm = ChatLoRAMemory(model_name=tiny_model, store_path=str(path), namespace=mem_ns, max_tokens=16)
    questions = ["What is the favourite colour of Alma Vance?", "What is the home city of Bob Stone?"]
    assert [m.content for m in llm.batch(list[Any](questions))] == ["blue", "Paris"]
    assert mem is shared_memory(path, tiny_model)  # the chat model answers from the very same memory

    colour_id = value_to_item(store.get(ns, "colour").value, ns, "colour").id  # type: ignore[union-attr]
    calls = _fail_first_forget(mem, monkeypatch)
    with pytest.raises(RuntimeError, match="rebuild failed"):
        store.delete(ns, "colour")
    assert store.get(ns, "colour") is not None  # a failed delete leaves the key as it was
    store.delete(ns, "colour")  # consolidated: the module is rebuilt without it
    assert len(calls) == 2 and store.get(ns, "colour") is None
    assert colour_id not in {it.id for it in mem.items(mem_ns)}
    assert mem.ls(mem_ns)[0].version == 2
    assert llm.invoke(questions[1]).content == "Paris"

    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Rome"})  # an update
    assert store.pending() == [(ns, "city")]
    assert store.get(ns, "city").value["object"] == "Rome"  # type: ignore[union-attr]
    assert {it.object for it in mem.items(mem_ns)} == {"Paris", "a cat"}  # type: ignore[union-attr]
    reports = store.consolidate()
    assert len(reports) == 1 and reports[0].recall == 1.0
    objects = sorted(it.object for it in mem.items(mem_ns))  # type: ignore[union-attr]
    assert objects == ["Rome", "a cat"]  # the overwritten value was forgotten, the new one written
    assert llm.invoke(questions[1]).content == "Rome"
    assert store.consolidate() == []  # nothing pending


def test_a_consolidator_then_pending_edits_of_consolidated_keys_train_nothing(
    tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LoRAMemoryStore(tmp_path / "mem", tiny_model, consolidate_every=2, train=TINY_TRAIN, lora=TINY_LORA)
    mem, ns = store.memory, ("user_2",)
    mem_ns = store.memory_namespace(ns)
    worker = store.start_consolidator()  # the store's policy, in the background: puts never train
    assert worker.policy.max_items == 2
    store.put(ns, "pet", {"subject": "Cleo Ward", "relation": "pet", "object": "a cat"})
    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Paris"})
    worker.flush(timeout=600)
    store.close()
    assert not worker.running and store.pending() == []
    assert len(worker.reports) == 1  # consolidated by the worker, once (the put did not do it itself)
    version = mem.ls(mem_ns)[0].version

    import loramem.edits
    import loramem.writing

    calls: list[Any] = []
    monkeypatch.setattr(loramem.writing, "write_module", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(loramem.edits, "write_module", lambda *a, **k: calls.append(a))

    store.put(ns, "note", {"text": "Bob Stone owns a red bicycle."})  # a new key, pending
    store.delete(ns, "note")  # a pending key: dropped from the buffer
    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Rome"})
    assert store.get(ns, "city").value["object"] == "Rome"  # type: ignore[union-attr]
    store.put(ns, "city", {"subject": "Bob Stone", "relation": "home city", "object": "Paris"})  # back again
    assert store.pending() == [] and store.get(ns, "city").value["object"] == "Paris"  # type: ignore[union-attr]
    assert calls == [] and mem.ls(mem_ns)[0].version == version
    assert {it.metadata["key"] for it in mem.items(mem_ns)} == {"pet", "city"}


def test_keys_of_a_split_namespace(tmp_path: Path, tiny_model: str) -> None:
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
    assert len(mem.ls(mem_ns)) >= 2 and store.pending() == []
    for name, obj in people.items():  # every key answered exactly from the module that holds its item
        item = store.get(ns, name)
        assert item is not None and item.value["object"] == obj, name
    assert {h.key for h in store.search(ns, limit=10)} == set(people)
