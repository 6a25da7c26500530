"""``LoRAMemoryStore``: LangGraph long-term memory in loramem's short-term buffer, consolidated into LoRA modules.

A thin layer over the core; the store keeps no database and no queue of its own:

* ``put(ns, key, value)`` is ``KnowledgeMemory.remember`` into ``memory_namespace(ns)``: the value becomes a
  loramem item (``value_to_item``: a ``Fact`` for string ``subject``/``relation``/``object``, else a
  ``Document`` of its ``text``, ``content`` or JSON) whose metadata carries ``key``, the JSON ``value`` and its
  ``created_at``/``updated_at``. It is durable in the store's manifest on return, trains nothing, and
  ``KnowledgeMemory.ask`` on that namespace answers from it at once (the buffer's retrieval).
* ``get``, ``search`` and ``list_namespaces`` are answered exactly from the core: the pending items
  (``mem.pending``) over the consolidated ones (``mem.items``), matched by ``metadata["key"]``.
  ``search(query=...)`` ranks values by cosine similarity on the core's embedder (``loramem.embed``).
* ``consolidate()`` is ``mem.consolidate`` of the store's namespaces; ``consolidate_every``/``consolidate_tokens``
  are a ``loramem.ConsolidationPolicy``, checked after each writing batch (or run in the background by
  ``start_consolidator``). Overwriting a key replaces its pending item (the core's same-key rule); a new value
  of a consolidated key is pending until consolidation turns it into ``KnowledgeMemory.update``.
* ``delete`` is ``mem.forget`` of the key's item(s): a pending one leaves the buffer untrained, a consolidated
  one rebuilds its module at once (a failed rebuild raises and the key stays as it was).

Limits, because items are content-addressed (an item id is its text, never its metadata): one namespace cannot
hold the same item under two keys (``put`` raises ValueError), and a new value of a consolidated key that maps
to the same item (only fields the item does not use changed) rebuilds the module without it and remembers it
again. ``put(..., index=False)`` is remembered and consolidated like any value (the core has no untrained
items); it is only left out of ``search(query=...)`` ranking (listed after the ranked values, score None, as
LangGraph's ``InMemoryStore`` does). TTLs are not supported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

from ._values import Entry, Space, dt, keyed, matches, newest, ns_matches
from .chat_models import shared_memory

if TYPE_CHECKING:
    from loramem import (
        ConsolidationPolicy,
        Consolidator,
        Document,
        Fact,
        KnowledgeMemory,
        LoraSpec,
        TrainConfig,
        WriteReport,
    )


LEGACY_KV = "langgraph_store.sqlite"  # the exact layer of langchain-loramem 0.1 (no longer read)

_CLEAN_LABEL = re.compile(
    r"^[A-Za-z0-9_:-]+$"
)  # '@' is kept for hashed names, so the two forms never collide


def memory_namespace(namespace: tuple[str, ...]) -> str:
    """The loramem namespace that holds a LangGraph namespace's values (deterministic, injective).

    ``("users", "alice", "facts")`` -> ``users.alice.facts`` (LangGraph labels never contain '.'); tuples with
    other characters, or too long, become ``<slug>@<16 hex of sha256>``.
    """
    if not namespace:
        raise ValueError("namespace: expected a non-empty tuple of labels, got ()")
    name = ".".join(namespace)
    if (
        all(_CLEAN_LABEL.match(label) for label in namespace)
        and len(name) <= 128
        and (name[0].isalnum() or name[0] == "_")
    ):
        return name
    digest = hashlib.sha256(json.dumps(list(namespace), ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.:-]+", "_", name).lstrip(".:-")[:100] or "ns"
    return f"{slug}@{digest}"


def value_to_item(value: dict[str, Any], namespace: tuple[str, ...], key: str) -> Fact | Document:
    """A stored value as a loramem item: a Fact if it has string subject/relation/object, else a Document.

    (The store adds the metadata it answers ``get`` from: ``key``, ``value``, ``created_at``, ``updated_at``.)"""
    from loramem import Document, Fact

    meta = {"langgraph_namespace": list(namespace), "langgraph_key": key}

    def text_field(name: str) -> str | None:
        v = value.get(name)
        return v if isinstance(v, str) and v.strip() else None

    if all(text_field(f) for f in ("subject", "relation", "object")):
        return Fact(
            subject=value["subject"],
            relation=value["relation"],
            object=value["object"],
            question=text_field("question"),
            answer=text_field("answer"),
            metadata=meta,
        )
    text = (
        text_field("text") or text_field("content") or json.dumps(value, sort_keys=True, ensure_ascii=False)
    )
    return Document(text=text, title=text_field("title"), metadata=meta)


class LoRAMemoryStore(BaseStore):
    """LangGraph ``BaseStore`` over a loramem store: values are remembered at once and consolidated into LoRA.

    Args:
        store_path: folder of the loramem store (shared with ``ChatLoRAMemory``/``LoRAMemoryRetriever``).
        model_name: base model (alias, local HF folder or hub id).
        consolidate_every: consolidate a namespace once this many of its items are pending (None: no count
            trigger); ``ConsolidationPolicy.max_items``.
        consolidate_tokens: ... or once its pending items hold about this many tokens (the core's estimate;
            None: no token trigger); ``ConsolidationPolicy.max_tokens``. With neither set, call
            ``consolidate()`` or ``start_consolidator()``.
        train, lora: made the shared memory's defaults (what consolidation and ``forget`` rebuilds use).
        to_item: how a value becomes a loramem ``Fact``/``Document`` (default :func:`value_to_item`).
        kv_path: ignored (deprecated): the store keeps no database of its own.

    A writing batch that meets the policy consolidates before it returns (training: seconds to minutes on a CPU),
    unless a consolidator of the memory runs (``start_consolidator()``): it consolidates in the background.
    """

    supports_ttl = False

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        model_name: str = "smollm2-135m",
        *,
        consolidate_every: int | None = None,
        consolidate_tokens: int | None = None,
        train: TrainConfig | None = None,
        lora: LoraSpec | None = None,
        to_item: Callable[[dict[str, Any], tuple[str, ...], str], Fact | Document] = value_to_item,
        kv_path: str | os.PathLike[str] | None = None,
    ) -> None:
        for name, given in (
            ("consolidate_every", consolidate_every),
            ("consolidate_tokens", consolidate_tokens),
        ):
            if given is not None and (not isinstance(given, int) or given < 1):
                raise ValueError(f"{name}: expected None or an int >= 1, got {given!r}")
        if kv_path is not None:
            warnings.warn(
                "LoRAMemoryStore(kv_path=...) is ignored: the store keeps no database of its own any more "
                "(values live in the loramem store's manifest)",
                DeprecationWarning,
                stacklevel=2,
            )
        self.store_path = os.fspath(store_path)
        if os.path.exists(os.path.join(self.store_path, LEGACY_KV)):
            warnings.warn(
                f"{os.path.join(self.store_path, LEGACY_KV)} (langchain-loramem 0.1's exact layer) is no longer "
                "read: put its values again to see them in this store",
                UserWarning,
                stacklevel=2,
            )
        self.model_name = model_name
        self.consolidate_every = consolidate_every
        self.consolidate_tokens = consolidate_tokens
        self.train = train
        self.lora = lora
        self.to_item = to_item
        self._lock = threading.RLock()
        self._memory: KnowledgeMemory | None = None
        self._consolidator: Consolidator | None = None
        self._vectors: dict[str, np.ndarray] = {}  # item id -> embedding of consolidated items (a cache)

    # --- helpers ---------------------------------------------------------------------------------------------

    @staticmethod
    def memory_namespace(namespace: tuple[str, ...]) -> str:
        """The loramem namespace (for ``ChatLoRAMemory(namespace=...)``) holding this namespace's values."""
        return memory_namespace(tuple(namespace))

    @property
    def memory(self) -> KnowledgeMemory:
        """The shared ``KnowledgeMemory`` of ``store_path`` (the one ``ChatLoRAMemory`` on it uses).

        ``train``/``lora``, when given, become its defaults (used by consolidation and ``forget`` rebuilds);
        when several stores share one memory, the last one to touch it wins.
        """
        if self._memory is None:
            mem = shared_memory(self.store_path, self.model_name)
            if self.train is not None:
                mem.train_config = self.train
            if self.lora is not None:
                mem.lora = self.lora
            self._memory = mem
        return self._memory

    @property
    def policy(self) -> ConsolidationPolicy | None:
        """``consolidate_every``/``consolidate_tokens`` as the core's policy (None when neither is set)."""
        if self.consolidate_every is None and self.consolidate_tokens is None:
            return None
        from loramem import ConsolidationPolicy

        return ConsolidationPolicy(
            max_items=self.consolidate_every, max_tokens=self.consolidate_tokens, max_age_s=None
        )

    def pending(self) -> list[tuple[tuple[str, ...], str]]:
        """(namespace, key) of the values not consolidated yet, oldest first (``mem.pending``)."""
        return [
            (tuple(p.item.metadata["langgraph_namespace"]), str(p.item.metadata["key"]))
            for p in self.memory.pending()
            if keyed(p.item)
        ]

    def _scan(self, mem_ns: str) -> Space:
        mem = self.memory
        # The buffer first: a consolidation committing in between then shows an item twice, never not at all.
        buffered = mem.pending(mem_ns)
        held = mem.items(mem_ns)
        space = Space({}, {}, {})
        for it in held:
            space.owners[it.id] = it.metadata.get("key") if keyed(it) else None
            if keyed(it):
                newest(space.held, Entry(it, False))
        for p in buffered:
            space.owners[p.id] = p.item.metadata.get("key") if keyed(p.item) else None
            if keyed(p.item):
                newest(space.pending, Entry(p.item, True, p.embedding))
        return space

    def _spaces(self, prefix: tuple[str, ...]) -> list[str]:
        """The loramem namespaces that may hold values under ``prefix`` (hashed names always may)."""
        joined = ".".join(prefix)
        return [
            ns
            for ns in self.memory.namespaces()
            if not prefix or "@" in ns or ns == joined or ns.startswith(joined + ".")
        ]

    # --- BaseStore -------------------------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        seen: dict[str, Space] = {}  # this batch's reads of a namespace, until it writes there
        written: set[str] = set()

        def space(mem_ns: str) -> Space:
            if mem_ns not in seen:
                seen[mem_ns] = self._scan(mem_ns)
            return seen[mem_ns]

        with self._lock:
            for op in ops:
                validate_op_namespace(op)
                if isinstance(op, GetOp):
                    results.append(self._get(op, space))
                elif isinstance(op, SearchOp):
                    results.append(self._search(op, space))
                elif isinstance(op, ListNamespacesOp):
                    results.append(self._list_namespaces(op, space))
                elif isinstance(op, PutOp):
                    mem_ns = memory_namespace(op.namespace)
                    self._put(op, mem_ns, space(mem_ns))
                    seen.pop(mem_ns, None)
                    written.add(mem_ns)
                    results.append(None)
                else:
                    raise TypeError(
                        f"ops: expected GetOp, SearchOp, PutOp or ListNamespacesOp, got {type(op).__name__}"
                    )
        self._consolidate_due(written)  # outside the lock: other threads' reads go on while it trains
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.get_running_loop().run_in_executor(None, self.batch, list(ops))

    @staticmethod
    def _item(entry: Entry) -> Item:
        return Item(
            value=entry.value,
            key=entry.key,
            namespace=entry.namespace,
            created_at=dt(entry.created),
            updated_at=dt(entry.updated),
        )

    def _get(self, op: GetOp, space: Callable[[str], Space]) -> Item | None:
        entry = space(memory_namespace(op.namespace)).entries.get(op.key)
        return None if entry is None or entry.namespace != op.namespace else self._item(entry)

    def _entries_under(self, prefix: tuple[str, ...], space: Callable[[str], Space]) -> list[Entry]:
        return [
            e
            for ns in self._spaces(prefix)
            for e in space(ns).entries.values()
            if e.namespace[: len(prefix)] == prefix
        ]

    def _search(self, op: SearchOp, space: Callable[[str], Space]) -> list[SearchItem]:
        entries = [
            e
            for e in self._entries_under(op.namespace_prefix, space)
            if not op.filter or all(matches(e.value.get(k), v) for k, v in op.filter.items())
        ]
        scores: dict[int, float] = {}
        ranked = [e for e in entries if e.indexed] if op.query else []
        if ranked and op.query:
            from loramem.embed import Embedder

            query = Embedder.shared().encode([op.query])[0]
            vectors = self._embeddings(ranked)
            scores = {id(e): float(np.dot(query, v)) for e, v in zip(ranked, vectors)}
        hits = sorted(entries, key=lambda e: (id(e) not in scores, -scores.get(id(e), 0.0), -e.updated))
        return [
            SearchItem(
                e.namespace, e.key, e.value, dt(e.created), dt(e.updated), score=scores.get(id(e))
            )
            for e in hits[op.offset : op.offset + op.limit]
        ]

    def _embeddings(self, entries: list[Entry]) -> list[np.ndarray]:
        """Each entry's unit vector: the buffer's stored one, else the core's embedder over ``render_item``
        (cached per item id: ids are content ids)."""
        from loramem.embed import Embedder
        from loramem.text import render_item

        missing = [e for e in entries if e.vector is None and e.item.id not in self._vectors]
        if missing:
            if len(self._vectors) > 50_000:
                self._vectors.clear()
            encoded = Embedder.shared().encode([render_item(e.item) for e in missing])
            self._vectors.update({e.item.id: v for e, v in zip(missing, encoded)})
        return [e.vector if e.vector is not None else self._vectors[e.item.id] for e in entries]

    def _list_namespaces(self, op: ListNamespacesOp, space: Callable[[str], Space]) -> list[tuple[str, ...]]:
        spaces = {e.namespace for e in self._entries_under((), space)}
        if op.match_conditions:
            spaces = {ns for ns in spaces if all(ns_matches(c, ns) for c in op.match_conditions)}
        if op.max_depth is not None:
            spaces = {ns[: op.max_depth] for ns in spaces}
        return sorted(spaces)[op.offset : op.offset + op.limit]

    def _put(self, op: PutOp, mem_ns: str, space: Space) -> None:
        mem = self.memory
        held, pending = space.held.get(op.key), space.pending.get(op.key)
        if op.value is None:  # delete: the consolidated item first, so a failed rebuild leaves the key as it was
            if held is not None:
                mem.forget(held.item.id, namespace=mem_ns)
            if pending is not None:
                mem.forget(pending.item.id, namespace=mem_ns)
            return
        if not isinstance(op.value, dict):
            raise TypeError(f"value: expected a dict (or None to delete), got {type(op.value).__name__}")
        value = json.loads(json.dumps(op.value, ensure_ascii=False))  # as it will read back
        indexed = op.index is not False
        current = pending or held
        if current is not None and current.value == value and current.indexed == indexed:
            return  # already this value
        now = time.time()
        item = self.to_item(op.value, op.namespace, op.key)
        meta = {
            **item.metadata,
            "langgraph_namespace": list(op.namespace),
            "key": op.key,
            "value": value,
            "created_at": current.created if current is not None else now,
            "updated_at": now,
        }
        if not indexed:
            meta["index"] = False
        item = dataclasses.replace(item, metadata=meta)
        owner = space.owners.get(item.id, op.key)
        if owner != op.key:
            raise ValueError(
                f"namespace {op.namespace!r} already holds this value's item ({item.id}) "
                + (f"under key {owner!r}" if owner is not None else "(written without a key)")
                + ": a loramem namespace holds an item once; make the values differ or use another namespace"
            )
        if held is not None and held.item.id == item.id:
            if held.value == value and held.indexed == indexed:  # back to the consolidated value
                if pending is not None:
                    mem.forget(pending.item.id, namespace=mem_ns)
                return
            mem.forget(held.item.id, namespace=mem_ns)  # same item, new metadata: the core keeps one copy
        if pending is not None and pending.item.id == item.id:
            mem.forget(pending.item.id, namespace=mem_ns)  # same item, new metadata (untrained)
        mem.remember(item, namespace=mem_ns)  # replaces a pending value of the key (the core's same-key rule)

    # --- consolidation ---------------------------------------------------------------------------------------

    def _consolidate_due(self, spaces: set[str]) -> None:
        """Consolidate the written namespaces that meet the policy, unless a consolidator of this memory runs
        (it serves them then)."""
        policy = self.policy
        if policy is None or not spaces:
            return
        status = self.memory.status()
        if (status["consolidator"] or {}).get("running"):
            return
        for ns in policy.due({ns: s for ns, s in status["pending"].items() if ns in spaces}):
            self.memory.consolidate(ns)

    def consolidate(self) -> list[WriteReport]:
        """Train every pending value into its namespace's LoRA module(s): ``mem.consolidate`` of each loramem
        namespace with pending values of this store (a new value of a consolidated key is an ``update``).

        Returns the ``WriteReport`` of every version written. Values stay pending if a write fails."""
        spaces = sorted({p.namespace for p in self.memory.pending() if keyed(p.item)})
        reports: list[WriteReport] = []
        for ns in spaces:  # the core serialises writes; reads go on meanwhile
            reports += self.memory.consolidate(ns)
        return reports

    async def aconsolidate(self) -> list[WriteReport]:
        return await asyncio.get_running_loop().run_in_executor(None, self.consolidate)

    def start_consolidator(self, policy: ConsolidationPolicy | None = None) -> Consolidator:
        """Consolidate in the background (``mem.start_consolidator``) by ``policy``, default this store's
        ``policy`` (else the core's default). It serves every namespace of the memory; ``close()`` stops it."""
        from loramem import ConsolidationPolicy

        self._consolidator = self.memory.start_consolidator(policy or self.policy or ConsolidationPolicy())
        return self._consolidator

    def close(self) -> None:
        """Stop the consolidator this store started (pending values stay pending, durably)."""
        if self._consolidator is not None:
            self._consolidator.stop()
            self._consolidator = None

    def __repr__(self) -> str:
        return f"LoRAMemoryStore({self.store_path!r}, model={self.model_name!r})"
