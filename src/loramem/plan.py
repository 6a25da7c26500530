"""The write planner: which module each new item goes to, and at which rank.

With a capacity model (``loramem.capacity``) for the base model, a namespace never silently overfills a module:

1. new items are grouped by topic (k-means over their embeddings, k = modules the total needs), so a module
   holds related knowledge and the embedding router can find it;
2. each group goes to the existing module of the namespace it is closest to that still has room (fill below
   ``PlanConfig.fill`` of its capacity), else to a new module;
3. a new module gets the smallest rank that holds its group, or the most parameter-efficient rank when the
   group needs more than one module (the paper: several small modules beat one large one).

Without a capacity model, or with ``split=False``, everything goes to the namespace's one module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .capacity import CapacityModel
from .config import LoraSpec, PlanConfig
from .store import ModuleInfo, ModuleStore
from .text import item_key
from .types import Example, Item


@dataclass
class Assignment:
    info: ModuleInfo | None  # the existing module that receives the items, or None for a new one
    module_id: str | None  # None: the store names the new module
    spec: LoraSpec
    items: list[Item]
    reason: str = ""


def kmeans(vectors: np.ndarray, k: int, iters: int = 20) -> np.ndarray:
    """Cluster labels for unit vectors (cosine k-means, farthest-point init: deterministic)."""
    n = len(vectors)
    k = max(1, min(k, n))
    centers = [0]
    sims = vectors @ vectors[0]
    for _ in range(1, k):
        nxt = int(np.argmin(sims))
        centers.append(nxt)
        sims = np.maximum(sims, vectors @ vectors[nxt])
    c = vectors[centers].copy()
    labels = np.zeros(n, dtype=int)
    for _ in range(iters):
        new = np.argmax(vectors @ c.T, axis=1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(k):
            members = vectors[labels == j]
            if len(members):
                m = members.mean(axis=0)
                c[j] = m / (np.linalg.norm(m) or 1.0)
    return labels


def item_tokens(examples: Sequence[Example], prompt: Any) -> dict[str, int]:
    from .train import count_knowledge_tokens

    by_item: dict[str, list[Example]] = {}
    for e in examples:
        by_item.setdefault(e.item_id, []).append(e)
    return {i: count_knowledge_tokens(ex, prompt) for i, ex in by_item.items()}


def plan_write(
    store: ModuleStore,
    prompt: Any,
    namespace: str,
    current: list[ModuleInfo],
    new: list[Item],
    new_examples: list[Example],
    spec: LoraSpec,
    cfg: PlanConfig,
    capacity: CapacityModel | None,
    *,
    rank_given: bool = False,
) -> list[Assignment]:
    """Assignments of the ``new`` items (with their synthesized ``new_examples``) to the namespace's ``current``
    modules or new ones. ``spec``: the LoRA spec of new modules; ``rank_given``: the caller chose its rank, so
    the capacity model only decides the split. ``prompt`` renders examples to count knowledge tokens."""
    if not new:
        return []
    if capacity is None:
        target = current[0] if current else None
        why = "one module per namespace (no capacity model)" if cfg.split else "split off"
        return [Assignment(target, target.module_id if target else None, spec, new, why)]

    tokens = item_tokens(new_examples, prompt)
    total = sum(tokens.get(it.id, 0) for it in new)
    fixed_rank = rank_given or not cfg.auto_rank
    try:
        rank, _ = (spec.r, 0) if fixed_rank else capacity.plan(total, cfg.fill)
    except ValueError as exc:  # a capacity model that held nothing cannot plan: one module, and say why
        target = current[0] if current else None
        return [Assignment(target, target.module_id if target else None, spec, new, f"no plan: {exc}")]
    if capacity.capacity(rank) <= 0:
        raise ValueError(f"the capacity model says a rank-{rank} module holds nothing; pick another rank or "
                         "recalibrate (loramem calibrate)")
    per_module = max(1, int(capacity.capacity(rank) * cfg.fill))

    # Room left in the namespace's modules.
    free = {m.module_id: int(capacity.capacity(int(m.lora_spec.get("r", spec.r))) * cfg.fill) - m.knowledge_tokens
            for m in current}
    if len(current) == 1 and total <= free[current[0].module_id]:
        return [Assignment(current[0], current[0].module_id, spec, new, f"fits {current[0].module_id}")]

    from .embed import Embedder

    embedder: Embedder | None = Embedder.shared()
    try:
        vecs = embedder.encode([item_key(it) for it in new])  # type: ignore[union-attr]
    except ImportError as exc:  # no embedder installed: group by arrival order, and say so
        import warnings

        warnings.warn(f"grouping by arrival order, not topic: {exc}", stacklevel=4)
        embedder, vecs = None, np.eye(len(new), dtype=np.float32)
    k = max(1, math.ceil(total / per_module))
    by_topic = cfg.group_by == "topic" and embedder is not None
    labels = kmeans(vecs, k) if by_topic else np.arange(len(new)) * k // len(new)
    groups: list[list[int]] = []
    for j in sorted(set(labels.tolist())):
        idx = [i for i in range(len(new)) if labels[i] == j]
        centroid = vecs[idx].mean(axis=0)
        idx.sort(key=lambda i: -float(vecs[i] @ centroid))  # most typical first: a spill-over keeps the outliers
        chunk: list[int] = []
        used = 0
        for i in idx:
            t = tokens.get(new[i].id, 0)
            if chunk and used + t > per_module:
                groups.append(chunk)
                chunk, used = [], 0
            chunk.append(i)
            used += t
        groups.append(chunk)

    centroids: dict[str, np.ndarray] = {}
    for m in current if embedder is not None else []:
        held = store.items(namespace, store.module_items(m.module_id, m.version))
        if held and embedder is not None:
            c = embedder.encode([item_key(it) for it in held]).mean(axis=0)
            centroids[m.module_id] = c / (np.linalg.norm(c) or 1.0)
    by_id = {m.module_id: m for m in current}
    out: dict[str, Assignment] = {}
    fresh: list[Assignment] = []
    for g in sorted(groups, key=len, reverse=True):
        g_tokens = sum(tokens.get(new[i].id, 0) for i in g)
        c = vecs[g].mean(axis=0)
        room = [mid for mid, f in free.items() if f >= g_tokens]
        if room:
            best = max(room, key=lambda mid: float(centroids[mid] @ c) if mid in centroids else -1.0)
            free[best] -= g_tokens
            a = out.setdefault(best, Assignment(by_id[best], best, spec, [], f"room in {best}"))
            a.items += [new[i] for i in g]
            continue
        # Every new module of one write gets the write's rank, so they can be merged with any method later
        # (linear/TIES/DARE need equal ranks); a write small enough for one module gets the smallest rank.
        r = rank if (fixed_rank or len(groups) > 1) else capacity.plan(g_tokens, cfg.fill)[0]
        new_spec = LoraSpec.from_dict({**spec.to_dict(), "r": r})
        fresh.append(Assignment(None, None, new_spec, [new[i] for i in g],
                                f"new module r={r} for {g_tokens} knowledge tokens (capacity {capacity.capacity(r)})"))
    return list(out.values()) + fresh
