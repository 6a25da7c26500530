"""The short-term buffer's rows in the manifest: items remembered but not in a module yet.

``KnowledgeMemory.remember`` adds rows (one transaction, durable on return); reads retrieve over them by their
stored embeddings; a consolidation *claims* the rows it trains and the commit of the version that holds them
deletes them in the same transaction (``ModuleStore.commit_version``). So at every instant a remembered item
is pending or held by a committed version, never both and never neither, whatever process dies when.

A forget (or a replacement by key) of a claimed row leaves a tombstone (``dropped``) instead of deleting it:
the commit of the version that trained on it is then refused (``PendingChangedError``) and the consolidation
trains again without it, so a forgotten item is never kept. Layer 1.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .store import ModuleStore
from .types import Fact, Item, item_from_dict


@dataclass(frozen=True)
class PendingItem:
    namespace: str
    item: Item
    created_at: float
    tokens: int  # estimated: words x 4/3 (remember() does not load the model's tokenizer)
    embedding: np.ndarray | None
    claimed: bool

    @property
    def id(self) -> str:
        return self.item.id


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text.split()) * 4 / 3))


def add(store: ModuleStore, namespace: str, items: Sequence[Item], texts: Sequence[str],
        vectors: np.ndarray | None, replace: dict[str, list[str]]) -> None:
    """Insert pending rows (an item already pending is left as it is; one forgotten while claimed is wanted
    again, with what it says now: a commit of the claimed row's older payload is refused). ``replace``: new item
    id -> pending ids it replaces (same key), dropped in the same transaction."""
    now = time.time()
    with store.transaction() as db:
        for ids in replace.values():
            _drop(db, namespace, ids)
        for i, (item, text) in enumerate(zip(items, texts)):
            kind = "fact" if isinstance(item, Fact) else "document"
            blob = None if vectors is None else np.asarray(vectors[i], dtype=np.float32).tobytes()
            db.execute(
                "INSERT INTO pending(namespace, item_id, kind, payload, created_at, tokens, embedding) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(namespace, item_id) DO UPDATE SET dropped=0, "
                "payload=excluded.payload, embedding=excluded.embedding WHERE dropped=1",
                (namespace, item.id, kind, json.dumps(item.to_dict(), ensure_ascii=False), now + i * 1e-6,
                 estimate_tokens(text), blob),
            )


def items(store: ModuleStore, namespace: str | None = None, *, claimed: str | None = None) -> list[PendingItem]:
    """Live (not dropped) pending rows, oldest first; ``claimed``: only those of that claim."""
    sql = "SELECT namespace, payload, created_at, tokens, embedding, claim FROM pending WHERE dropped=0"
    args: tuple[Any, ...] = ()
    if namespace is not None:
        sql, args = sql + " AND namespace=?", (namespace,)
    if claimed is not None:
        sql, args = sql + " AND claim=?", (*args, claimed)
    rows = store.query(sql + " ORDER BY created_at, item_id", args)
    return [PendingItem(ns, item_from_dict(json.loads(p)), t, n,
                        None if e is None else np.frombuffer(e, dtype=np.float32), c is not None)
            for ns, p, t, n, e, c in rows]


def drop(store: ModuleStore, namespace: str, item_ids: Sequence[str]) -> list[str]:
    """Forget pending items without training; returns the ids that were pending."""
    with store.transaction() as db:
        return _drop(db, namespace, item_ids)


def _drop(db: Any, namespace: str, item_ids: Sequence[str]) -> list[str]:
    found = []
    for item_id in item_ids:
        row = db.execute("SELECT claim FROM pending WHERE namespace=? AND item_id=? AND dropped=0",
                         (namespace, item_id)).fetchone()
        if row is None:
            continue
        found.append(item_id)
        if row[0] is None:
            db.execute("DELETE FROM pending WHERE namespace=? AND item_id=?", (namespace, item_id))
        else:
            db.execute("UPDATE pending SET dropped=1 WHERE namespace=? AND item_id=?", (namespace, item_id))
    return found


def claim(store: ModuleStore, namespace: str) -> tuple[str, list[PendingItem]]:
    """Claim every live pending row of a namespace for one consolidation (call under the store's writer lock:
    tombstones and claims left there are from consolidations that died, so they are cleared first)."""
    token = uuid.uuid4().hex
    with store.transaction() as db:
        db.execute("DELETE FROM pending WHERE namespace=? AND dropped=1", (namespace,))
        db.execute("UPDATE pending SET claim=? WHERE namespace=?", (token, namespace))
    return token, items(store, namespace, claimed=token)


def release(store: ModuleStore, token: str) -> None:
    """After a consolidation (done or failed): its rows still pending are unclaimed, its tombstones deleted."""
    with store.transaction() as db:
        db.execute("DELETE FROM pending WHERE claim=? AND dropped=1", (token,))
        db.execute("UPDATE pending SET claim=NULL WHERE claim=?", (token,))


def stats(store: ModuleStore) -> dict[str, dict[str, float]]:
    """Per namespace with pending items: their count, estimated tokens and the oldest one's age in seconds."""
    now = time.time()
    rows = store.query("SELECT namespace, COUNT(*), SUM(tokens), MIN(created_at) FROM pending WHERE dropped=0 "
                       "GROUP BY namespace ORDER BY namespace")
    return {ns: {"items": n, "tokens": int(t or 0), "oldest_s": round(now - first, 3)} for ns, n, t, first in rows}


def set_state(store: ModuleStore, state: str, detail: dict[str, Any]) -> None:
    """The consolidator's heartbeat (one row), so ``loramem ls`` in another process can say what it does."""
    with store.transaction() as db:
        db.execute("INSERT INTO consolidator(id, pid, host, state, updated_at, detail) VALUES (1,?,?,?,?,?) "
                   "ON CONFLICT(id) DO UPDATE SET pid=excluded.pid, host=excluded.host, state=excluded.state, "
                   "updated_at=excluded.updated_at, detail=excluded.detail",
                   (os.getpid(), socket.gethostname(), state, time.time(), json.dumps(detail)))


def get_state(store: ModuleStore) -> dict[str, Any] | None:
    """The last heartbeat: state, pid, host, age_s, detail; ``state`` says ``gone`` for a dead local process."""
    rows = store.query("SELECT pid, host, state, updated_at, detail FROM consolidator WHERE id=1")
    if not rows:
        return None
    pid, host, state, updated, detail = rows[0]
    if state not in ("stopped",) and host == socket.gethostname() and not _alive(pid):
        state = "gone"
    return {"state": state, "pid": pid, "host": host, "age_s": round(time.time() - updated, 1),
            "detail": json.loads(detail)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
