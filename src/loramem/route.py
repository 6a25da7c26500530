"""Routers: which module(s) of a namespace answer each question.

- ``embedding``: a faiss index (inner product on unit vectors) over every module's keys (fact questions and
  subjects, document titles and passages); a module scores the best similarity of its keys among the
  question's nearest keys; the top-k modules above
  ``threshold`` answer, and a question no module reaches falls back to the bare model (or the reader's RAG/ICL
  context). Keys are embedded once per module version and cached in ``<store>/router/``.
- ``oracle``: given the right module per question (benchmarks only).
- ``all``: every module of the namespace (merged), for a namespace small enough to merge.

Namespaces scope everything: routers only ever see the modules of the namespace asked, so one user's
modules never answer another's question.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import ReadConfig
from .index import VectorIndex
from .store import ModuleInfo, ModuleStore
from .text import item_keys

Route = list[tuple[str, float]]  # (module id, score), best first; empty: no module


class Router(Protocol):
    name: str

    def route(self, questions: Sequence[str], modules: Sequence[ModuleInfo]) -> list[Route]: ...


ROUTERS: dict[str, Callable[..., Router]] = {}


def register_router(name: str, factory: Callable[..., Router]) -> None:
    ROUTERS[name] = factory


def get_router(name: str, store: ModuleStore, **options: Any) -> Router:
    """``ROUTERS[name](store, **options)``; an unknown name raises an error listing the known ones."""
    if name not in ROUTERS:
        raise KeyError(f"unknown router {name!r}; known routers: {', '.join(sorted(ROUTERS))}")
    return ROUTERS[name](store, **options)


def _cache_dir(store: ModuleStore) -> Path:
    return Path(store.root) / "router"


def _cache_name(info: ModuleInfo) -> str:
    # Keyed on the weights' sha256 too: a module id re-created after a drop restarts at v1.
    return f"{info.module_id}__v{info.version}__{info.sha256[:12]}.npy"


def gc_cache(store: ModuleStore) -> list[Path]:
    """Delete the embedding router's cached keys of module versions that are no longer active."""
    active = {_cache_name(i) for i in store.modules()}
    folder = _cache_dir(store)
    removed = []
    for f in folder.glob("*.npy") if folder.exists() else []:
        if f.name not in active:
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


class EmbeddingRouter:
    name = "embedding"

    def __init__(self, store: ModuleStore, top_k: int = 1, threshold: float = 0.3) -> None:
        if top_k < 1:
            raise ValueError(f"top_k: expected an int >= 1, got {top_k}")
        self.store = store
        self.top_k = top_k
        self.threshold = threshold
        self.search_keys = 64  # nearest keys looked at per question; a module's score is its best among them
        self._keys: dict[tuple[str, int, str], np.ndarray] = {}
        self._index: tuple[tuple[tuple[str, int, str], ...], VectorIndex] | None = None

    def _cache_path(self, info: ModuleInfo) -> Path:
        return _cache_dir(self.store) / _cache_name(info)

    def keys(self, info: ModuleInfo) -> np.ndarray:
        """Unit vectors of a module version's keys (embedded once, then read from the cache)."""
        key = (info.module_id, info.version, info.sha256)
        if key in self._keys:
            return self._keys[key]
        path = self._cache_path(info)
        vecs: np.ndarray | None = None
        if path.exists():
            try:
                vecs = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                vecs = None  # a torn cache file: embed again
        if vecs is None:
            from .embed import Embedder

            items = self.store.items(info.namespace, self.store.module_items(info.module_id, info.version))
            texts = [k for it in items for k in item_keys(it)] or [info.module_id]
            vecs = Embedder.shared().encode(texts)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
            np.save(tmp, vecs)
            os.replace(tmp, path)
        self._keys[key] = vecs
        return vecs

    def forget(self, module_id: str) -> None:
        for key in [k for k in self._keys if k[0] == module_id]:
            del self._keys[key]
        self._index = None

    def index(self, modules: Sequence[ModuleInfo]) -> VectorIndex:
        """One faiss index over the keys of these module versions (cached per set of versions)."""
        key = tuple(sorted((m.module_id, m.version, m.sha256) for m in modules))
        if self._index is None or self._index[0] != key:
            index = VectorIndex()
            for info in modules:
                vecs = self.keys(info)
                index.add_vectors(vecs, [{"module": info.module_id}] * len(vecs))
            self._index = (key, index)
        return self._index[1]

    def scores(self, questions: Sequence[str], modules: Sequence[ModuleInfo]) -> np.ndarray:
        """(questions, modules): each module's best key similarity among the nearest keys (-1: none near)."""
        from .embed import Embedder

        index = self.index(modules)
        column = {m.module_id: j for j, m in enumerate(modules)}
        q = Embedder.shared().encode(list(questions))
        out = np.full((len(questions), len(modules)), -1.0, dtype=np.float32)
        for i, hits in enumerate(index.search_vectors(q, self.search_keys)):
            for score, record in hits:
                j = column[record["module"]]
                out[i, j] = max(out[i, j], score)
        return out

    def route(self, questions: Sequence[str], modules: Sequence[ModuleInfo]) -> list[Route]:
        if not modules:
            return [[] for _ in questions]
        s = self.scores(questions, modules)
        routes: list[Route] = []
        for row in s:
            best = np.argsort(-row)[: self.top_k]
            routes.append([(modules[j].module_id, float(row[j])) for j in best if row[j] >= self.threshold])
        return routes


class OracleRouter:
    """The module that holds each question's answer, as given (benchmarks measure routing against it)."""

    name = "oracle"

    def __init__(self, store: ModuleStore | None = None, answers: Mapping[str, str | Sequence[str]] | None = None) -> None:
        self.answers = dict(answers or {})

    def route(self, questions: Sequence[str], modules: Sequence[ModuleInfo]) -> list[Route]:
        known = {m.module_id for m in modules}
        out: list[Route] = []
        for q in questions:
            if q not in self.answers:
                raise KeyError(f"oracle router: no module given for question {q!r:.80}")
            ids = [self.answers[q]] if isinstance(self.answers[q], str) else list(self.answers[q])
            out.append([(m, 1.0) for m in ids if m in known])
        return out


class AllRouter:
    name = "all"

    def __init__(self, store: ModuleStore | None = None) -> None:
        pass

    def route(self, questions: Sequence[str], modules: Sequence[ModuleInfo]) -> list[Route]:
        return [[(m.module_id, 1.0) for m in modules] for _ in questions]


class Routers:
    """The routers of one store, each made once per (name, top_k, threshold): they keep cached keys and indexes."""

    def __init__(self, store: ModuleStore, read: Callable[[], ReadConfig]) -> None:
        self.store = store
        self._read = read
        self._made: dict[tuple[str, int, float], Router] = {}

    def get(self, name: str | None = None, top_k: int | None = None, threshold: float | None = None) -> Router:
        """The router ``name`` (default ``ReadConfig.route``) with its options (defaults from ``ReadConfig``)."""
        cfg = self._read()
        key = (name or cfg.route, top_k or cfg.top_k, cfg.threshold if threshold is None else threshold)
        if key not in self._made:
            opts = {"top_k": key[1], "threshold": key[2]} if key[0] == "embedding" else {}
            self._made[key] = get_router(key[0], self.store, **opts)
        return self._made[key]

    def forget(self, module_id: str) -> None:
        """A module got a new version or was dropped: its cached keys (and indexes holding them) are stale."""
        for router in self._made.values():
            forget = getattr(router, "forget", None)
            if forget is not None:
                forget(module_id)

    def gc(self) -> list[Path]:
        return gc_cache(self.store)


register_router("embedding", EmbeddingRouter)
register_router("oracle", OracleRouter)
register_router("all", AllRouter)


def routing_accuracy(routes: Sequence[Route], expected: Sequence[str | None]) -> dict[str, float]:
    """Top-1 accuracy and hit rate (expected module anywhere in the route) against the right modules."""
    if len(routes) != len(expected):
        raise ValueError(f"expected {len(routes)} expected modules, got {len(expected)}")
    n = max(1, len(routes))
    top1 = sum(1 for r, e in zip(routes, expected) if (r[0][0] if r else None) == e) / n
    hit = sum(1 for r, e in zip(routes, expected) if e in {m for m, _ in r}) / n
    return {"top1": top1, "hit": hit, "fallback": sum(1 for r in routes if not r) / n}
