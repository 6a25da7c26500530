"""Short-term memory: remember in milliseconds, answer at once by retrieval, consolidate into LoRA later.

    remember(store, items, namespace)  -> rows in the manifest's buffer (one transaction), each with its embedding
    contexts(store, questions, ns)     -> per question, the pending items most like it, rendered as a context
                                          (``text.render_context``: the layout context-mixed modules train on)
    consolidate(rt, ns)                -> claim the rows, write them through the normal planner and write path
                                          (an item with the key of a held one goes through ``update``); the
                                          commit of each version takes its items out of the buffer

Forgetting or replacing a pending item trains nothing. Layer 4: over the store, the embedder and the write and
edit rooms, never the facade (which holds the locks: remember takes none of the model's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from . import pending
from .edits import same_key
from .embed import Embedder
from .pending import PendingItem
from .runtime import Runtime
from .store import ModuleStore, PendingChangedError, check_namespace
from .text import render_context, render_item
from .types import Document, Fact, Item, WriteReport, as_items

ItemsArg = Fact | Document | str | Iterable[Fact | Document | str]
ATTEMPTS = 3  # a consolidation whose items change while it trains starts again, up to this many times


def as_memories(items: ItemsArg) -> list[Item]:
    """Items to remember: Facts, Documents, or plain strings (each a Document: "Alma's cat is called Miso.")."""
    if isinstance(items, (str, Fact, Document)):
        items = [items]
    out = [Document(text=it) if isinstance(it, str) else it for it in items]
    return as_items(out)


def remember(store: ModuleStore, items: ItemsArg, namespace: str, embedder: Embedder | None = None) -> list[str]:
    """``KnowledgeMemory.remember``: see its docstring."""
    check_namespace(namespace)
    given = as_memories(items)
    held = {it.id for it in store.items(namespace)}
    live = pending.items(store, namespace)
    live_ids = {p.id for p in live}
    new: dict[str, Item] = {}
    replace: dict[str, list[str]] = {}
    for item in given:
        if item.id in held or item.id in live_ids or item.id in new:
            continue
        old = [p.id for p in live if same_key(p.item, item)] + [i for i, n in new.items() if same_key(n, item)]
        if old:
            replace[item.id] = old
            for i in old:
                new.pop(i, None)
        new[item.id] = item
    if new:
        texts = [render_item(it) for it in new.values()]
        vectors = (embedder or Embedder.shared()).encode(texts)
        pending.add(store, namespace, list(new.values()), texts, vectors, replace)
    return [it.id for it in given]


def pending_ids(store: ModuleStore, namespace: str | None, item_ids: Sequence[str]) -> dict[str, list[str]]:
    """Namespace -> which of ``item_ids`` are pending there (``namespace`` None: in any namespace)."""
    out: dict[str, list[str]] = {}
    wanted = set(item_ids)
    for p in pending.items(store, namespace):
        if p.id in wanted:
            out.setdefault(p.namespace, []).append(p.id)
    return out


def replaced_pending(store: ModuleStore, items: Sequence[Item], namespace: str | None) -> tuple[str | None, list[Item]]:
    """Of the items of an ``update``, those that give a pending item a new value (same key), and their
    namespace: they replace it in the buffer, untrained. Several namespaces matching: the caller must say."""
    found: list[Item] = []
    spaces: set[str] = set()
    for item in items:
        hits = {p.namespace for p in pending.items(store, namespace) if same_key(p.item, item)}
        if hits:
            found.append(item)
            spaces |= hits
    if len(spaces) > 1:
        raise ValueError(f"the items give new values to pending items of namespaces {sorted(spaces)}: pass "
                         "namespace= to say which")
    return (next(iter(spaces)) if spaces else namespace), found


def contexts(store: ModuleStore, questions: Sequence[str], namespace: str, k: int, threshold: float,
             embedder: Embedder | None = None) -> list[tuple[str | None, list[str]]]:
    """Per question: (the context of the ``k`` pending items most like it above ``threshold`` cosine, their
    ids), or (None, []) when none is. One embedding call for the questions; the items' vectors are stored."""
    rows = pending.items(store, namespace)
    if not rows or k <= 0:
        return [(None, []) for _ in questions]
    emb = embedder or Embedder.shared()
    missing = [i for i, p in enumerate(rows) if p.embedding is None]
    vectors: list[Any] = [p.embedding for p in rows]
    if missing:  # rows written without a vector (an embedder that failed then): embed them now
        for i, v in zip(missing, emb.encode([render_item(rows[i].item) for i in missing])):
            vectors[i] = v
    scores = emb.encode(list(questions)) @ np.stack(vectors).T
    out: list[tuple[str | None, list[str]]] = []
    for row in scores:
        best = [int(i) for i in np.argsort(-row)[:k] if row[i] >= threshold]
        picked: list[PendingItem] = [rows[i] for i in sorted(best, key=lambda i: rows[i].created_at)]
        out.append((render_context([p.item for p in picked]) if picked else None, [p.id for p in picked]))
    return out


def consolidate(rt: Runtime, namespace: str | None = None,
                progress: Callable[[str, int], None] | None = None) -> list[WriteReport]:
    """``KnowledgeMemory.consolidate``: see its docstring. ``progress(namespace, items)`` before each write."""
    store = rt.store
    spaces = [check_namespace(namespace)] if namespace is not None else sorted(pending.stats(store))
    reports: list[WriteReport] = []
    for ns in spaces:
        for attempt in range(1, ATTEMPTS + 1):
            with store.write_lock():
                token, rows = pending.claim(store, ns)
                try:
                    if not rows:
                        break
                    if progress is not None:
                        progress(ns, len(rows))
                    reports += _write(rt, ns, [p.item for p in rows])
                    break
                except PendingChangedError:
                    if attempt == ATTEMPTS:
                        raise
                finally:
                    pending.release(store, token)
    return reports


def _write(rt: Runtime, namespace: str, items: list[Item]) -> list[WriteReport]:
    from . import edits, writing

    held = rt.store.items(namespace)
    updates = [it for it in items if any(same_key(h, it) for h in held)]
    plain = [it for it in items if it not in updates]
    t0 = time.perf_counter()
    out = []
    if plain:
        out.append(writing.write(rt, plain, namespace))
    if updates:
        out.append(edits.update(rt, updates, namespace, None, True, None))
    for r in out:
        r.details["consolidated"] = {"items": len(items), "seconds": round(time.perf_counter() - t0, 3)}
    return out
