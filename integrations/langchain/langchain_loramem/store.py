"""``LoRAMemoryStore``: LangGraph long-term memory whose values are consolidated into LoRA modules.

Two layers, because a parametric memory cannot promise what ``BaseStore`` promises:

* **Exact layer.** Every key -> value is kept in a SQLite file beside the loramem store
  (``<store_path>/langgraph_store.sqlite``). ``get``, ``list_namespaces`` and ``search`` are answered from it,
  exactly. ``search(query=...)`` is a plain word-overlap score over the kept values (no embeddings).
* **Parametric layer.** ``put`` queues the value. ``consolidate()`` (or the policy: every
  ``consolidate_every`` puts, or once ``consolidate_tokens`` queued tokens are reached) writes the queued
  values into the LoRA module of their namespace with ``KnowledgeMemory.write``. A value with string
  ``subject``/``relation``/``object`` becomes a ``Fact``; any other value a ``Document`` of its ``text`` (or
  ``content``, else its JSON). Ask ``ChatLoRAMemory(namespace=store.memory_namespace(ns))`` about them.

``delete`` of a consolidated key rebuilds the module without the items it produced
(``KnowledgeMemory.forget``) right away. The forget is durable: it is recorded in the same transaction as the
row's delete and only cleared once the rebuild succeeded, so a failed rebuild is retried by the next writing
batch (put/delete) or ``consolidate()``. Overwriting a consolidated key forgets its old item at the next
consolidation. Each key records the module that holds its item, also when the planner splits a namespace. ``put(..., index=False)`` keeps a value in the exact layer only. TTLs are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

from .chat_models import shared_memory

if TYPE_CHECKING:
    from loramem import Document, Fact, KnowledgeMemory, LoraSpec, TrainConfig, WriteReport

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    memory_ns TEXT NOT NULL,
    state TEXT NOT NULL,          -- 'pending' (queued), 'consolidated' (in a module), 'kept' (index=False)
    item_ids TEXT,                -- JSON list of the loramem item ids it produced, once consolidated
    module_id TEXT, module_version INTEGER,
    PRIMARY KEY (ns, key));
CREATE INDEX IF NOT EXISTS kv_state ON kv(state, memory_ns);
-- items of overwritten keys, forgotten at the next consolidation (when the new values are written)
CREATE TABLE IF NOT EXISTS stale (memory_ns TEXT NOT NULL, item_id TEXT NOT NULL, PRIMARY KEY (memory_ns, item_id));
-- items of deleted keys still to forget from the LoRA: recorded with the row's delete, cleared once the core's
-- forget succeeded, retried by every later writing batch and consolidation until then
CREATE TABLE IF NOT EXISTS forgets (memory_ns TEXT NOT NULL, item_id TEXT NOT NULL, PRIMARY KEY (memory_ns, item_id));
"""

_CLEAN_LABEL = re.compile(
    r"^[A-Za-z0-9_:-]+$"
)  # '@' is kept for hashed names, so the two forms never collide
_WORD = re.compile(r"\w+", re.UNICODE)


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
    """A stored value as a loramem item: a Fact if it has string subject/relation/object, else a Document."""
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


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _flat_text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(_flat_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return " ".join(_flat_text(v) for v in value)
    return str(value)


def _matches(value: Any, expected: Any) -> bool:
    """LangGraph filter semantics: nested equality, plus $eq/$ne/$gt/$gte/$lt/$lte operators."""
    if isinstance(expected, dict):
        if any(k.startswith("$") for k in expected):
            return all(_apply(value, op, arg) for op, arg in expected.items())
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in expected.items())
    return bool(value == expected)


def _apply(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if value is None:
        return False
    compare = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}
    if op not in compare:
        raise ValueError(
            f"filter: unsupported operator {op!r}; expected one of $eq, $ne, {', '.join(compare)}"
        )
    return bool(compare[op](float(value), float(arg)))


def _ns_matches(condition: MatchCondition, ns: tuple[str, ...]) -> bool:
    path = condition.path
    if len(ns) < len(path):
        return False
    pairs = zip(ns, path) if condition.match_type == "prefix" else zip(reversed(ns), reversed(path))
    return all(p == "*" or k == p for k, p in pairs)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


class LoRAMemoryStore(BaseStore):
    """LangGraph ``BaseStore`` with exact key-value data kept in SQLite and values consolidated into LoRA.

    Args:
        store_path: folder of the loramem store (shared with ``ChatLoRAMemory``/``LoRAMemoryRetriever``).
        model_name: base model (alias, local HF folder or hub id).
        consolidate_every: consolidate automatically once this many values are queued (None: never).
        consolidate_tokens: consolidate automatically once the queued values hold about this many tokens
            (estimated as characters / 4; None: never). With neither set, call ``consolidate()`` yourself.
        train, lora: write configs passed to ``KnowledgeMemory.write`` (and made the shared memory's defaults,
            which ``forget`` rebuilds use).
        to_item: how a value becomes a loramem ``Fact``/``Document`` (default :func:`value_to_item`).
        kv_path: the SQLite file of the exact layer (default ``<store_path>/langgraph_store.sqlite``).

    A put that triggers consolidation trains a module before it returns (seconds to minutes on a CPU).
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
        self.store_path = os.fspath(store_path)
        self.model_name = model_name
        self.consolidate_every = consolidate_every
        self.consolidate_tokens = consolidate_tokens
        self.train = train
        self.lora = lora
        self.to_item = to_item
        os.makedirs(self.store_path, exist_ok=True)
        self.kv_path = (
            os.fspath(kv_path)
            if kv_path is not None
            else os.path.join(self.store_path, "langgraph_store.sqlite")
        )
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.kv_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._memory: KnowledgeMemory | None = None

    # --- helpers ---------------------------------------------------------------------------------------------

    @staticmethod
    def memory_namespace(namespace: tuple[str, ...]) -> str:
        """The loramem namespace (for ``ChatLoRAMemory(namespace=...)``) holding this namespace's values."""
        return memory_namespace(tuple(namespace))

    @property
    def memory(self) -> KnowledgeMemory:
        """The shared ``KnowledgeMemory`` of ``store_path`` (the one ``ChatLoRAMemory`` on it uses).

        ``train``/``lora``, when given, become its defaults (used by ``forget`` rebuilds too); when
        several stores share one memory, the last one to touch it wins.
        """
        if self._memory is None:
            mem = shared_memory(self.store_path, self.model_name)
            if self.train is not None:
                mem.train_config = self.train
            if self.lora is not None:
                mem.lora = self.lora
            self._memory = mem
        return self._memory

    def pending(self) -> list[tuple[tuple[str, ...], str]]:
        """(namespace, key) of the values queued for the next consolidation."""
        with self._lock:
            rows = self._db.execute(
                "SELECT ns, key FROM kv WHERE state='pending' ORDER BY updated_at"
            ).fetchall()
        return [(tuple(ns.split(".")), key) for ns, key in rows]

    # --- BaseStore -------------------------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        writes = puts = 0
        with self._lock:
            for op in ops:
                validate_op_namespace(op)
                if isinstance(op, GetOp):
                    results.append(self._get(op))
                elif isinstance(op, SearchOp):
                    results.append(self._search(op))
                elif isinstance(op, ListNamespacesOp):
                    results.append(self._list_namespaces(op))
                elif isinstance(op, PutOp):
                    self._put(op)
                    writes += 1
                    puts += op.value is not None
                    results.append(None)
                else:
                    raise TypeError(
                        f"ops: expected GetOp, SearchOp, PutOp or ListNamespacesOp, got {type(op).__name__}"
                    )
            if writes:
                self._flush_forgets()  # this batch's deletes, and any earlier one whose rebuild failed
            if puts and self._should_consolidate():
                self.consolidate()
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.get_running_loop().run_in_executor(None, self.batch, list(ops))

    def _get(self, op: GetOp) -> Item | None:
        row = self._db.execute(
            "SELECT value, created_at, updated_at FROM kv WHERE ns=? AND key=?",
            (".".join(op.namespace), op.key),
        ).fetchone()
        if row is None:
            return None
        return Item(
            value=json.loads(row[0]),
            key=op.key,
            namespace=op.namespace,
            created_at=_dt(row[1]),
            updated_at=_dt(row[2]),
        )

    def _rows_under(self, prefix: tuple[str, ...]) -> list[tuple[str, str, str, float, float]]:
        if not prefix:
            return self._db.execute("SELECT ns, key, value, created_at, updated_at FROM kv").fetchall()
        joined = ".".join(prefix)
        return self._db.execute(
            "SELECT ns, key, value, created_at, updated_at FROM kv WHERE ns=? OR substr(ns, 1, ?)=?",
            (joined, len(joined) + 1, joined + "."),
        ).fetchall()

    def _search(self, op: SearchOp) -> list[SearchItem]:
        query_words = _words(op.query) if op.query else set()
        hits: list[tuple[float | None, float, SearchItem]] = []
        for ns, key, raw, created, updated in self._rows_under(op.namespace_prefix):
            value = json.loads(raw)
            if op.filter and not all(_matches(value.get(k), v) for k, v in op.filter.items()):
                continue
            score = len(query_words & _words(_flat_text(value))) / len(query_words) if query_words else None
            item = SearchItem(tuple(ns.split(".")), key, value, _dt(created), _dt(updated), score=score)
            hits.append((score, updated, item))
        hits.sort(key=lambda h: (-(h[0] or 0.0), -h[1]))
        return [h[2] for h in hits[op.offset : op.offset + op.limit]]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        spaces = [tuple(r[0].split(".")) for r in self._db.execute("SELECT DISTINCT ns FROM kv").fetchall()]
        if op.match_conditions:
            spaces = [ns for ns in spaces if all(_ns_matches(c, ns) for c in op.match_conditions)]
        if op.max_depth is not None:
            spaces = [ns[: op.max_depth] for ns in spaces]
        return sorted(set(spaces))[op.offset : op.offset + op.limit]

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One SQLite transaction (the connection autocommits otherwise)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _put(self, op: PutOp) -> None:
        ns = ".".join(op.namespace)
        mem_ns = memory_namespace(op.namespace)
        now = time.time()
        row = self._db.execute(
            "SELECT state, item_ids, created_at, module_id, module_version FROM kv WHERE ns=? AND key=?",
            (ns, op.key),
        ).fetchone()
        old_ids: list[str] = (
            json.loads(row[1]) if row is not None and row[0] == "consolidated" and row[1] else []
        )
        if op.value is None:  # delete
            if row is not None:
                with self._tx():  # the row goes and its pending forget is recorded, or neither
                    self._db.execute("DELETE FROM kv WHERE ns=? AND key=?", (ns, op.key))
                    self._db.executemany(
                        "INSERT OR IGNORE INTO forgets(memory_ns, item_id) VALUES (?, ?)",
                        [(mem_ns, i) for i in old_ids],
                    )
            return
        if not isinstance(op.value, dict):
            raise TypeError(f"value: expected a dict (or None to delete), got {type(op.value).__name__}")
        keep_only = op.index is False
        new_ids = [] if keep_only else [self.to_item(op.value, op.namespace, op.key).id]
        module: tuple[Any, Any] = (None, None)
        stale: list[str] = []
        if old_ids and old_ids == new_ids:  # same content: the module already holds it
            state, ids, module = "consolidated", json.dumps(old_ids), (row[3], row[4])
        else:
            state, ids, stale = ("kept" if keep_only else "pending"), None, old_ids
        with self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO stale(memory_ns, item_id) VALUES (?, ?)", [(mem_ns, i) for i in stale]
            )
            self._db.execute(
                "INSERT OR REPLACE INTO kv(ns, key, value, created_at, updated_at, memory_ns, state, item_ids, module_id, "
                "module_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ns,
                    op.key,
                    json.dumps(op.value, ensure_ascii=False, sort_keys=True),
                    row[2] if row else now,
                    now,
                    mem_ns,
                    state,
                    ids,
                    *module,
                ),
            )

    def _referenced(self, mem_ns: str) -> set[str]:
        rows = self._db.execute(
            "SELECT item_ids FROM kv WHERE memory_ns=? AND state='consolidated'", (mem_ns,)
        ).fetchall()
        return {i for (ids,) in rows for i in json.loads(ids or "[]")}

    def _held(self, mem_ns: str) -> set[str]:
        if mem_ns not in self.memory.namespaces():
            return set()
        return {it.id for it in self.memory.items(mem_ns)}

    def _forget(self, mem_ns: str, ids: set[str]) -> None:
        """Rebuild the namespace's module(s) without the items no remaining consolidated key still produces."""
        drop = (ids - self._referenced(mem_ns)) & self._held(mem_ns)
        if drop:
            self.memory.forget(sorted(drop), namespace=mem_ns)

    def _flush_forgets(self) -> None:
        """Forget the items of deleted keys; each namespace's record is cleared only once its forget succeeded
        (a failure raises and leaves it for the next writing batch or consolidation)."""
        pending: dict[str, set[str]] = {}
        for mem_ns, item_id in self._db.execute("SELECT memory_ns, item_id FROM forgets").fetchall():
            pending.setdefault(mem_ns, set()).add(item_id)
        for mem_ns, ids in sorted(pending.items()):
            self._forget(mem_ns, ids)
            self._db.executemany(
                "DELETE FROM forgets WHERE memory_ns=? AND item_id=?", [(mem_ns, i) for i in sorted(ids)]
            )

    def pending_forgets(self) -> list[tuple[str, str]]:
        """(loramem namespace, item id) of deleted keys' items whose forget has not succeeded yet."""
        with self._lock:
            return [tuple(r) for r in self._db.execute(
                "SELECT memory_ns, item_id FROM forgets ORDER BY memory_ns, item_id").fetchall()]

    def _holders(self, mem_ns: str) -> dict[str, tuple[str, int]]:
        """Item id -> (module id, version) of the module that holds it, over the namespace's modules."""
        mem = self.memory
        return {
            item_id: (info.module_id, info.version)
            for info in mem.ls(mem_ns)
            for item_id in mem.store.module_items(info.module_id, info.version)
        }

    # --- consolidation ---------------------------------------------------------------------------------------

    def _should_consolidate(self) -> bool:
        if self.consolidate_every is None and self.consolidate_tokens is None:
            return False
        rows = self._db.execute("SELECT value FROM kv WHERE state='pending'").fetchall()
        if self.consolidate_every is not None and len(rows) >= self.consolidate_every:
            return True
        tokens = sum(len(r[0]) // 4 + 1 for r in rows)
        return self.consolidate_tokens is not None and tokens >= self.consolidate_tokens

    def consolidate(self) -> list[WriteReport]:
        """Write every queued value into its namespace's LoRA module (and forget overwritten ones).

        Returns one ``WriteReport`` per namespace written. Values stay queued if a write fails.
        """
        reports: list[WriteReport] = []
        with self._lock:
            self._flush_forgets()  # deletes whose rebuild failed before
            pending: dict[str, list[tuple[str, str, str]]] = {}
            for ns, key, value, mem_ns in self._db.execute(
                "SELECT ns, key, value, memory_ns FROM kv WHERE state='pending' ORDER BY updated_at"
            ).fetchall():
                pending.setdefault(mem_ns, []).append((ns, key, value))
            stale: dict[str, set[str]] = {}
            for mem_ns, item_id in self._db.execute("SELECT memory_ns, item_id FROM stale").fetchall():
                stale.setdefault(mem_ns, set()).add(item_id)
            for mem_ns in sorted(set(pending) | set(stale)):
                rows = pending.get(mem_ns, [])
                items = [
                    self.to_item(json.loads(value), tuple(ns.split(".")), key) for ns, key, value in rows
                ]
                new_ids = {it.id for it in items}
                if mem_ns in stale:
                    self._forget(mem_ns, stale[mem_ns] - new_ids)
                    self._db.execute("DELETE FROM stale WHERE memory_ns=?", (mem_ns,))
                if not items:
                    continue
                report = self.memory.write(items, namespace=mem_ns, train=self.train, lora=self.lora)
                reports.append(report)
                # A split write spreads the items over several modules: record each key under its item's.
                holders = self._holders(mem_ns)
                fallback = (report.module_id, report.version)
                self._db.executemany(
                    "UPDATE kv SET state='consolidated', item_ids=?, module_id=?, module_version=? "
                    "WHERE ns=? AND key=? AND state='pending'",
                    [
                        (json.dumps([it.id]), *holders.get(it.id, fallback), ns, key)
                        for (ns, key, _), it in zip(rows, items)
                    ],
                )
        return reports

    async def aconsolidate(self) -> list[WriteReport]:
        return await asyncio.get_running_loop().run_in_executor(None, self.consolidate)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"LoRAMemoryStore({self.store_path!r}, model={self.model_name!r})"
