"""The module store: adapters in standard PEFT folders plus a SQLite manifest, written atomically.

Layout of a store folder::

    manifest.sqlite            modules, versions, items (text + synthesized examples), which items a version holds,
                               and the short-term buffer (``pending``: remembered items not in a module yet)
    modules/<module_id>/v<N>/  adapter_config.json + adapter_model.safetensors (loads with PeftModel.from_pretrained)
    tmp/                       versions being built; anything here is garbage from an interrupted write
    .write.lock                one writer at a time (other writers wait, then fail with StoreBusyError)

A version becomes visible only when its manifest row commits, after its folder was fsynced and renamed into
place; so a writer killed at any point leaves the previous state readable. Only safetensors are loaded, and
each file's sha256 is checked against the manifest, so truncation or corruption is reported, by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._fs import fsync_dir, fsync_tree
from ._schema import PENDING_SCHEMA as _PENDING_SCHEMA
from ._schema import SCHEMA as _SCHEMA
from .types import Example, Fact, Item, item_from_dict

SCHEMA_VERSION = 1
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$")


class StoreError(Exception):
    """Base class of store errors."""


class StoreSchemaError(StoreError):
    pass


class StoreBusyError(StoreError, TimeoutError):
    pass


class CorruptModuleError(StoreError):
    pass


class BaseModelMismatchError(StoreError, ValueError):
    pass


class PendingChangedError(StoreError):
    """A consolidation's items were forgotten or replaced while it trained: the version must not commit."""


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ValueError(
            f"namespace: expected 1-128 characters of letters, digits and _ . : @ - (not starting with "
            f"punctuation), got {namespace!r}"
        )
    return namespace


@dataclass(frozen=True)
class ModuleInfo:
    module_id: str
    namespace: str
    version: int
    path: Path
    base_model: str
    base_fingerprint: str
    lora_spec: dict[str, Any]
    trainable_params: int
    knowledge_tokens: int
    recall: float
    items: int
    created_at: float
    sha256: str
    report: dict[str, Any]

    @property
    def write_seconds(self) -> float | None:
        """How long the write of this version took, synthesis to commit (None for versions older than the field)."""
        value = self.report.get("write_seconds")
        return float(value) if value is not None else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModuleStore:
    """Durable state of a KnowledgeMemory. Safe to read from many processes; one writer at a time."""

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float = 600.0) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {str(self.root)!r} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "modules").mkdir(exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        # One connection, usable from any thread (frameworks call us from executor threads); the lock keeps a
        # transaction and the statements of other threads from interleaving.
        self._lock = threading.RLock()
        self._writer: int | None = None  # the thread holding the writer lock
        self._db = sqlite3.connect(
            self.root / "manifest.sqlite", timeout=30.0, isolation_level=None, check_same_thread=False
        )
        from filelock import FileLock

        # Switching a new database to WAL and creating its tables takes locks that SQLite's busy timeout does
        # not wait for: two processes opening a fresh store at once would see "database is locked".
        with FileLock(str(self.root / ".open.lock"), timeout=60):
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._check_schema()

    # --- schema and locking ---------------------------------------------------------------------------------

    def _check_schema(self) -> None:
        has_meta = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            found = int(row[0]) if row else 0
            if found > SCHEMA_VERSION:
                raise StoreSchemaError(
                    f"store {str(self.root)!r} was written by a newer loramem (schema v{found}); this version reads "
                    f"up to v{SCHEMA_VERSION}: upgrade loramem to open it"
                )
        if not has_meta:
            self._db.executescript(_SCHEMA)  # CREATE ... IF NOT EXISTS: safe when two processes race here
        self._add_missing_columns()
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _add_missing_columns(self) -> None:
        """Open stores written before a column existed by adding it (NULL in old rows): ``examples.context``
        came with context-mixed training; old examples are bare questions, which is what NULL means."""
        with self._tx() as db:
            columns = {r[1] for r in db.execute("PRAGMA table_info(examples)").fetchall()}
            if "context" not in columns:
                db.execute("ALTER TABLE examples ADD COLUMN context TEXT")
            for statement in _PENDING_SCHEMA.split(";"):  # tables older stores lack (readers of v1 ignore them)
                if statement.strip():
                    db.execute(statement)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction on the manifest (for the tables of ``loramem.pending``)."""
        return self._tx()

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of one read statement on the manifest."""
        return self._query(sql, args)

    @contextlib.contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the store's writer lock; another process's write waits up to ``timeout`` seconds, then fails.
        Re-entrant in the thread that holds it (a consolidation holds it around the writes it makes)."""
        from filelock import FileLock, Timeout

        if self._writer == threading.get_ident():
            yield
            return
        lock = FileLock(str(self.root / ".write.lock"))
        wait = self.lock_timeout if timeout is None else timeout
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise StoreBusyError(
                f"store {str(self.root)!r} is being written by another process; waited {wait:.0f}s "
                "(pass lock_timeout= to wait longer)"
            ) from None
        self._writer = threading.get_ident()
        try:
            self._clean_tmp()
            yield
        finally:
            self._writer = None
            lock.release()

    def _clean_tmp(self) -> None:
        """Remove what interrupted writes left behind (only ever called under the writer lock)."""
        for leftover in (self.root / "tmp").iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reading --------------------------------------------------------------------------------------------

    def modules(self, namespace: str | None = None) -> list[ModuleInfo]:
        sql = (
            "SELECT m.module_id, m.namespace, v.version, v.path, m.base_model, m.base_fingerprint, m.lora_spec, "
            "v.trainable_params, v.knowledge_tokens, v.recall, "
            "(SELECT COUNT(*) FROM version_items vi WHERE vi.module_id=m.module_id AND vi.version=v.version), "
            "v.created_at, v.sha256, v.report "
            "FROM modules m JOIN versions v ON v.module_id=m.module_id AND v.version=m.active_version"
        )
        args: tuple[Any, ...] = ()
        if namespace is not None:
            sql += " WHERE m.namespace=?"
            args = (namespace,)
        rows = self._query(sql + " ORDER BY m.namespace, m.created_at", args)
        return [
            ModuleInfo(
                module_id=r[0], namespace=r[1], version=r[2], path=self.root / r[3], base_model=r[4],
                base_fingerprint=r[5], lora_spec=json.loads(r[6]), trainable_params=r[7], knowledge_tokens=r[8],
                recall=r[9], items=r[10], created_at=r[11], sha256=r[12], report=json.loads(r[13]),
            )
            for r in rows
        ]

    def module(self, module_id: str) -> ModuleInfo:
        for info in self.modules():
            if info.module_id == module_id:
                return info
        raise KeyError(f"no module {module_id!r} in store {str(self.root)!r}")

    def namespaces(self) -> list[str]:
        rows = self._query("SELECT DISTINCT namespace FROM items UNION SELECT namespace FROM modules "
                           "UNION SELECT namespace FROM pending WHERE dropped=0")
        return sorted(r[0] for r in rows)

    def items(self, namespace: str | None, item_ids: Sequence[str] | None = None) -> list[Item]:
        """Items kept for a namespace, oldest first; ``namespace`` None: every namespace's, each item once."""
        if namespace is None:
            rows = self._query("SELECT item_id, payload FROM items GROUP BY item_id ORDER BY MIN(created_at), item_id")
        else:
            rows = self._query(
                "SELECT item_id, payload FROM items WHERE namespace=? ORDER BY created_at, item_id", (namespace,)
            )
        wanted = None if item_ids is None else set(item_ids)
        return [item_from_dict(json.loads(p)) for i, p in rows if wanted is None or i in wanted]

    def item_namespaces(self, item_ids: Sequence[str]) -> dict[str, list[str]]:
        """Item id -> the namespaces that keep it (an item id is a content id: one item may sit in several)."""
        out: dict[str, list[str]] = {i: [] for i in item_ids}
        for item_id in out:
            out[item_id] = [r[0] for r in self._query(
                "SELECT namespace FROM items WHERE item_id=? ORDER BY namespace", (item_id,))]
        return out

    def module_items(self, module_id: str, version: int) -> list[str]:
        rows = self._query(
            "SELECT item_id FROM version_items WHERE module_id=? AND version=? ORDER BY item_id", (module_id, version)
        )
        return [r[0] for r in rows]

    def examples(self, namespace: str, item_ids: Sequence[str]) -> list[Example]:
        out: list[Example] = []
        for item_id in item_ids:
            rows = self._query(
                "SELECT format, prompt, completion, probe, context FROM examples WHERE namespace=? AND item_id=? "
                "ORDER BY idx",
                (namespace, item_id),
            )
            out += [Example(item_id, f, p, c, bool(pr), ctx) for f, p, c, pr, ctx in rows]
        return out

    def context_examples(self, namespace: str) -> list[tuple[str, int, str]]:
        """(item_id, idx, context) of every kept example with a context."""
        return [tuple(r) for r in self._query(
            "SELECT item_id, idx, context FROM examples WHERE namespace=? AND context IS NOT NULL ORDER BY item_id, idx",
            (namespace,))]

    def delete_examples(self, namespace: str, keys: Sequence[tuple[str, int]]) -> None:
        """Delete kept examples by (item_id, idx), e.g. contexts quoting an item that is being forgotten."""
        with self._tx() as db:
            db.executemany("DELETE FROM examples WHERE namespace=? AND item_id=? AND idx=?",
                           [(namespace, i, idx) for i, idx in keys])

    def load_adapter(self, info: ModuleInfo) -> tuple[dict[str, Any], dict[str, Any]]:
        """(adapter_config dict, state dict) of a module version; never unpickles anything."""
        from safetensors.torch import load_file

        weights, config = info.path / ADAPTER_WEIGHTS, info.path / ADAPTER_CONFIG
        for f in (weights, config):
            if not f.exists():
                raise CorruptModuleError(f"module {info.module_id} v{info.version}: missing file {str(f)!r}")
        digest = _sha256(weights)
        if digest != info.sha256:
            raise CorruptModuleError(
                f"module {info.module_id} v{info.version}: {str(weights)!r} is corrupt or truncated "
                f"(sha256 {digest[:12]}..., manifest says {info.sha256[:12]}...); other modules are unaffected; "
                f"rewrite the namespace {info.namespace!r} or `loramem forget` it"
            )
        try:
            state = load_file(str(weights))
            cfg = json.loads(config.read_text(encoding="utf-8"))
        except Exception as exc:  # safetensors raises its own error types
            raise CorruptModuleError(f"module {info.module_id} v{info.version}: cannot read {str(info.path)!r}: {exc}") from exc
        return cfg, state

    # --- writing (call under write_lock) --------------------------------------------------------------------

    def new_module_id(self, namespace: str) -> str:
        stem = re.sub(r"[^a-z0-9]+", "_", namespace.lower()).strip("_")[:40] or "m"
        return f"{stem}-{uuid.uuid4().hex[:8]}"

    def commit_version(
        self,
        *,
        module_id: str,
        namespace: str,
        adapter_config: Any,
        state: dict[str, Any],
        base_model: str,
        base_fingerprint: str,
        lora_spec: dict[str, Any],
        trainable_params: int,
        knowledge_tokens: int,
        recall: float,
        report: dict[str, Any],
        new_items: Sequence[Item],
        new_examples: Sequence[Example],
        held_item_ids: Sequence[str],
    ) -> int:
        """Write a new version of ``module_id`` holding ``held_item_ids``; returns its version number."""
        from safetensors.torch import save_file

        row = self._query("SELECT MAX(version) FROM versions WHERE module_id=?", (module_id,))[0]
        version = (row[0] or 0) + 1
        rel = Path("modules") / module_id / f"v{version}"
        final = self.root / rel
        tmp = Path(tempfile.mkdtemp(prefix=f"{module_id}-v{version}-", dir=self.root / "tmp"))
        # 1. build the PEFT folder off to the side and make it durable
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / ADAPTER_WEIGHTS),
                  metadata={"format": "pt"})
        adapter_config.save_pretrained(str(tmp))
        fsync_tree(tmp)
        digest = _sha256(tmp / ADAPTER_WEIGHTS)
        # 2. move it into place (a folder left there by a write that died before step 3 is not in the manifest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(final.parent)
        # 3. make it visible: one transaction
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO modules(module_id, namespace, created_at, base_model, base_fingerprint, lora_spec, "
                "active_version) VALUES (?,?,?,?,?,?,?) ON CONFLICT(module_id) DO UPDATE SET active_version=?",
                (module_id, namespace, now, base_model, base_fingerprint, json.dumps(lora_spec), version, version),
            )
            db.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?)",
                (module_id, version, str(rel), now, trainable_params, knowledge_tokens, recall, digest,
                 json.dumps(report)),
            )
            for item in new_items:
                kind = "fact" if isinstance(item, Fact) else "document"
                db.execute(
                    "INSERT OR IGNORE INTO items VALUES (?,?,?,?,?)",
                    (namespace, item.id, kind, json.dumps(item.to_dict(), ensure_ascii=False), now),
                )
            counters: dict[str, int] = {}
            for ex in new_examples:
                idx = counters.get(ex.item_id, 0)
                counters[ex.item_id] = idx + 1
                db.execute(
                    "INSERT OR REPLACE INTO examples(namespace, item_id, idx, format, prompt, completion, probe, "
                    "context) VALUES (?,?,?,?,?,?,?,?)",
                    (namespace, ex.item_id, idx, ex.format, ex.prompt, ex.completion, int(ex.probe), ex.context),
                )
            db.executemany(
                "INSERT INTO version_items VALUES (?,?,?)", [(module_id, version, i) for i in held_item_ids]
            )
            # Consolidation: the items this version now holds leave the short-term buffer in the same
            # transaction, so a remembered item is pending or held, never both, never neither.
            keys = [(namespace, i) for i in held_item_ids]
            dropped = [i for ns, i in keys if db.execute(
                "SELECT 1 FROM pending WHERE namespace=? AND item_id=? AND dropped=1", (ns, i)).fetchone()]
            payloads = {it.id: json.dumps(it.to_dict(), ensure_ascii=False) for it in new_items}
            dropped += [i for i, text in payloads.items() if db.execute(  # remembered again with other metadata
                "SELECT 1 FROM pending WHERE namespace=? AND item_id=? AND claim IS NOT NULL AND payload<>?",
                (namespace, i, text)).fetchone()]
            if dropped:
                raise PendingChangedError(
                    f"module {module_id}: item(s) {dropped[:5]} were forgotten or replaced while this version "
                    "trained; it is not committed (consolidate again)")
            db.executemany("DELETE FROM pending WHERE namespace=? AND item_id=?", keys)
        return version

    def forget_namespace(self, namespace: str) -> list[str]:
        """Drop every module and item of a namespace. Returns the dropped module ids."""
        ids = [r[0] for r in self._query("SELECT module_id FROM modules WHERE namespace=?", (namespace,))]
        with self._tx() as db:
            for mid in ids:
                self._drop_rows(db, mid)
            db.execute("DELETE FROM items WHERE namespace=?", (namespace,))
            db.execute("DELETE FROM examples WHERE namespace=?", (namespace,))
            db.execute("UPDATE pending SET dropped=1 WHERE namespace=? AND claim IS NOT NULL", (namespace,))
            db.execute("DELETE FROM pending WHERE namespace=? AND claim IS NULL", (namespace,))
        for mid in ids:
            shutil.rmtree(self.root / "modules" / mid, ignore_errors=True)
        return ids

    def remove_items(self, namespace: str, item_ids: Sequence[str]) -> None:
        """Forget kept items (their text and examples). Modules must already have been rebuilt without them."""
        with self._tx() as db:
            for item_id in item_ids:
                db.execute("DELETE FROM items WHERE namespace=? AND item_id=?", (namespace, item_id))
                db.execute("DELETE FROM examples WHERE namespace=? AND item_id=?", (namespace, item_id))

    def drop_module(self, module_id: str) -> None:
        """Drop one module (all versions). Its items stay in the store and can be written again."""
        if not self._query("SELECT 1 FROM modules WHERE module_id=?", (module_id,)):
            raise KeyError(f"no module {module_id!r} in store {str(self.root)!r}")
        with self._tx() as db:
            self._drop_rows(db, module_id)
        shutil.rmtree(self.root / "modules" / module_id, ignore_errors=True)

    @staticmethod
    def _drop_rows(db: sqlite3.Connection, module_id: str) -> None:
        db.execute("DELETE FROM version_items WHERE module_id=?", (module_id,))
        db.execute("DELETE FROM versions WHERE module_id=?", (module_id,))
        db.execute("DELETE FROM modules WHERE module_id=?", (module_id,))

    def gc(self) -> list[Path]:
        """Delete folders of inactive versions and of writes that never committed. Call under write_lock."""
        keep = {self.root / info.path.relative_to(self.root) for info in self.modules()}
        removed: list[Path] = []
        for mod in (self.root / "modules").iterdir():
            for ver in mod.iterdir() if mod.is_dir() else []:
                if ver not in keep:
                    shutil.rmtree(ver, ignore_errors=True)
                    removed.append(ver)
            if mod.is_dir() and not any(mod.iterdir()):
                mod.rmdir()
        if removed:
            with self._tx() as db:
                for path in removed:
                    module_id, version = path.parent.name, int(path.name.lstrip("v") or 0)
                    db.execute("DELETE FROM versions WHERE module_id=? AND version=?", (module_id, version))
                    db.execute("DELETE FROM version_items WHERE module_id=? AND version=?", (module_id, version))
        return removed

