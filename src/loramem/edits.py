"""Edits: delete and change single items, rebuilding only the modules that hold them, and prove it.

``forget`` and ``update`` find the modules holding the removed items and give each a new version holding the
items it keeps plus any new value, then with ``verify`` measure the result on the new versions: the removed
items' recall next to the bare model's, the kept items' recall and the new values' recall. A module is rebuilt
from fresh weights (training from the old version would carry a removed item over), except where an update
only gives facts new values (``value_change``): that trains warm from the current version, on the new values
asked every question the old values were, with a bounded replay sample (``TrainConfig.replay_items``), as a
write does. An item id is a content id the store knows, so its namespace is found when none is given. Layer 4: over the runtime and ``writing``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from .adapters import BASE, AdapterPool
from .config import LoraSpec, SynthConfig
from .plan import Assignment
from .route import Routers
from .runtime import Runtime
from .store import ModuleInfo, ModuleStore, check_namespace
from .types import Document, Example, Fact, Item, WriteReport, as_items
from .writing import combine_reports, noop_report, plan, scrub_contexts, write_module

Added = tuple[Item, list[Example], set[str]]  # (new item, its examples, the ids of the items it replaces)


def namespace_of(rt: Runtime, item_ids: Sequence[str], namespace: str | None) -> str:
    """The namespace that keeps these items: ``namespace`` if given, else the one the store finds them in.

    Raises KeyError for ids no namespace keeps, ValueError when an id sits in several namespaces (listing
    them) or the ids are spread over several."""
    if namespace is not None:
        return check_namespace(namespace)
    found = rt.store.item_namespaces(item_ids)
    unknown = [i for i, ns in found.items() if not ns]
    if unknown:
        raise KeyError(f"no namespace of this store holds item(s) {unknown[:5]}")
    several = {i: ns for i, ns in found.items() if len(ns) > 1}
    if several:
        first = next(iter(several))
        raise ValueError(f"item {first} sits in namespaces {several[first]}: pass namespace= to say which"
                         + (f" ({len(several) - 1} more item(s) like it)" if len(several) > 1 else ""))
    spaces = sorted({ns[0] for ns in found.values()})
    if len(spaces) > 1:
        raise ValueError(f"the items are in different namespaces {spaces}: edit one namespace at a time "
                         "(pass namespace=)")
    return spaces[0]


def forget(rt: Runtime, item_ids: str | Sequence[str], namespace: str | None, verify: bool) -> WriteReport | None:
    """``KnowledgeMemory.forget``: see its docstring."""
    ids = [item_ids] if isinstance(item_ids, str) else list(item_ids)
    if not ids:
        raise ValueError("item_ids: expected at least one item id, got none")
    with rt.store.write_lock():
        if len(ids) == 1 and ids[0] in rt.store.namespaces() and not rt.store.item_namespaces(ids)[ids[0]]:
            raise KeyError(f"{ids[0]!r} is a namespace, not an item id: forget_namespace({ids[0]!r}) drops "
                           "a namespace (forget(namespace) did in loramem 0.1)")
        namespace = namespace_of(rt, ids, namespace)
        known = {it.id for it in rt.store.items(namespace)}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise KeyError(f"namespace {namespace!r} holds no item(s) {unknown[:5]}")
        return _replace(rt, namespace, set(ids), [], verify)


def update(
    rt: Runtime,
    items: Fact | Document | Iterable[Fact | Document],
    namespace: str | None,
    replaces: str | Sequence[str] | None,
    verify: bool,
    synth: SynthConfig | None,
) -> WriteReport:
    """``KnowledgeMemory.update``: see its docstring."""
    new_items = as_items(items)
    if replaces is not None and len(new_items) != 1:
        raise ValueError(f"replaces: only with a single item, got {len(new_items)} items")
    store = rt.store
    with store.write_lock():
        if namespace is None:
            namespace = _namespace_for_update(rt, new_items, replaces)
        check_namespace(namespace)
        held = store.items(namespace)
        pairs: list[tuple[Item, set[str]]] = []
        for item in new_items:
            if replaces is not None:
                old_ids = {replaces} if isinstance(replaces, str) else set(replaces)
                unknown = old_ids - {it.id for it in held}
                if unknown:
                    raise KeyError(f"namespace {namespace!r} holds no item(s) {sorted(unknown)[:5]}")
            else:
                old_ids = {it.id for it in held if same_key(it, item)}
                if not old_ids:
                    raise KeyError(f"namespace {namespace!r} holds no item with the key of {key_text(item)}; "
                                   "use write() to add it, or pass replaces=<item id>")
            old_ids.discard(item.id)  # already this value: nothing to replace
            if old_ids:
                pairs.append((item, old_ids))
        if not pairs:
            info = next(iter(store.modules(namespace)), None)
            if info is None:
                raise KeyError(f"namespace {namespace!r} has no module")
            return noop_report(info, namespace, 0.0)
        from .synth import synthesize

        scfg = synth or rt.settings.synth
        added = [(item, synthesize([item], scfg, namespace_items=held), old) for item, old in pairs]
        removed = set().union(*(old for _, old in pairs))
        report = _replace(rt, namespace, removed, added, verify)
        assert report is not None  # the new values need a module
        return report


def _namespace_for_update(rt: Runtime, items: list[Item], replaces: str | Sequence[str] | None) -> str:
    """The one namespace holding what ``items`` replace (the ids in ``replaces``, else the same keys)."""
    if replaces is not None:
        return namespace_of(rt, [replaces] if isinstance(replaces, str) else list(replaces), None)
    spaces: set[str] = set()
    for item in items:
        holders = [ns for ns in rt.store.namespaces() if any(same_key(it, item) for it in rt.store.items(ns))]
        if not holders:
            raise KeyError(f"no namespace holds an item with the key of {key_text(item)}; use write() to add it, "
                           "or pass replaces=<item id>")
        if len(holders) > 1:
            raise ValueError(f"items with the key of {key_text(item)} sit in namespaces {holders}: pass namespace=")
        spaces.add(holders[0])
    if len(spaces) > 1:
        raise ValueError(f"the items replace items of different namespaces {sorted(spaces)}: update one namespace "
                         "at a time (pass namespace=)")
    return spaces.pop()


def _replace(rt: Runtime, namespace: str, removed: set[str], added: list[Added], verify: bool) -> WriteReport | None:
    """Rebuild every module holding a removed item without it; an added item goes where its old one was."""
    t_start = time.perf_counter()
    store = rt.store
    infos = [m for m in store.modules(namespace) if removed & set(store.module_items(m.module_id, m.version))]
    for info in infos:
        rt.pool.check_base(info)
    removed_examples = store.examples(namespace, sorted(removed))
    scrub_contexts(rt, namespace, removed)  # kept items' contexts must not quote what is forgotten
    reports: list[WriteReport] = []
    holders = {m.module_id: set(store.module_items(m.module_id, m.version)) for m in infos}
    placed: set[str] = set()
    for info in infos:
        keep = [i for i in holders[info.module_id] if i not in removed]
        extra = [a for a in added if a[0].id not in placed and a[2] & holders[info.module_id]]
        placed |= {a[0].id for a in extra}
        if not keep and not extra:
            store.drop_module(info.module_id)
            _unload(rt.pool, rt.routers, info.module_id)
            continue
        olds = {it.id: it for it in store.items(namespace, sorted(removed & holders[info.module_id]))}
        warm = value_change(olds, extra)
        if warm:
            extra = [(it, ex + retargeted(it, [e for e in removed_examples if e.item_id in old], ex), old)
                     for it, ex, old in extra]
        reports.append(_rebuild(rt, info, namespace, keep, sorted(removed), extra, warm=warm))
    homeless = [a for a in added if a[0].id not in placed]
    if homeless:  # the old item was kept but in no module (its module was dropped): the planner places it
        new_items = [it for it, _, _ in homeless]
        new_examples = [e for _, ex, _ in homeless for e in ex]
        for a in plan(rt, namespace, store.modules(namespace), new_items, new_examples, None, None):
            mine = {i.id for i in a.items}
            reports.append(write_module(rt, namespace, a, [e for e in new_examples if e.item_id in mine],
                                        rt.settings.train, rt.settings.synth, edit=True))
    store.remove_items(namespace, sorted(removed))
    if not reports:
        return None
    report = combine_reports(reports, 0.0, 0.0, time.perf_counter() - t_start)
    if verify:
        report.details["verify"] = _verify(rt, reports, removed_examples, added)
    return report


def _rebuild(rt: Runtime, info: ModuleInfo, namespace: str, keep: list[str], removed: list[str],
             added: list[Added], *, warm: bool = False) -> WriteReport:
    spec = LoraSpec.from_dict(info.lora_spec)
    why = f"{'warm update of' if warm else 'rebuild without'} {len(removed)} item(s)"
    a = Assignment(info, info.module_id, spec, [it for it, _, _ in added], why)
    new_examples = [e for _, ex, _ in added for e in ex]
    # Fresh weights, unless every removed item is a fact whose new value is trained on every question the old
    # one was (``value_change``): training from the old version would carry a plainly removed item over. An
    # update (new values) is an edit: its neighbours keep the base model's answers (TrainConfig.kl_weight).
    return write_module(rt, namespace, a, new_examples, rt.settings.train, rt.settings.synth,
                        fresh=not warm, keep=keep, removed=removed, edit=bool(added))


def value_change(olds: dict[str, Item], added: list[Added]) -> bool:
    """Whether a module's edit is only new values of facts it holds: every removed item a Fact replaced by a
    Fact of the same key (subject, relation, question). Then a warm start is sound: the new value is trained on
    every question the old value was (``retargeted``), so no question keeps the old answer, and ``verify``
    still measures the old probes against the bare model. A plain forget (nothing replaces the item) or a
    replacement of another key needs fresh weights."""
    if not olds or not added:
        return False
    covered: set[str] = set()
    for new, _, old_ids in added:
        for old_id in old_ids & set(olds):
            if not (isinstance(new, Fact) and isinstance(olds[old_id], Fact) and same_key(olds[old_id], new)):
                return False
            covered.add(old_id)
    return covered == set(olds)


def retargeted(new: Item, old_examples: list[Example], new_examples: list[Example]) -> list[Example]:
    """The old value's bare questions the new value's own examples do not ask, answered with the new value."""
    assert isinstance(new, Fact)
    asked = {e.prompt for e in new_examples if e.context is None}
    out, seen = [], set(asked)
    for e in old_examples:
        if e.trained and e.prompt is not None and e.context is None and e.prompt not in seen:
            seen.add(e.prompt)
            out.append(Example(new.id, e.format, e.prompt, new.canonical_answer))
    return out


def _verify(rt: Runtime, reports: list[WriteReport], removed_examples: list[Example],
            added: list[Added]) -> dict[str, Any]:
    """Measure, not assume: recall (teacher-forced exact match, = greedy) of removed and added items on the
    rebuilt modules, next to the bare model's recall of the same probes."""
    from .train import encode_all, exact_recall

    tcfg = rt.settings.train
    pad = rt.prompt.tokenizer.pad_token_id
    pad = pad if pad is not None else 0

    def recall(examples: list[Example], adapter: str | None) -> float | None:
        probes = [e for e in examples if e.probe]
        if not probes:
            return None
        enc = encode_all(probes, rt.prompt, tcfg.seq_len)
        with rt.pool.activate([adapter or BASE]):
            hits = exact_recall(rt.pool.model, enc, tcfg.seq_len, tcfg.batch_tokens, pad)
        return sum(hits) / len(hits)

    out: dict[str, Any] = {"modules": [r.module_id for r in reports], "kept_recall": min(r.recall for r in reports)}
    pinned: set[str] = set()
    adapters = []
    for r in reports:  # pinned: a small cache budget must not evict one while the next loads
        adapters.append(rt.pool.load(rt.store.module(r.module_id), pinned))
        pinned.add(adapters[-1])
    if removed_examples:
        out["removed_recall"] = max(recall(removed_examples, a) or 0.0 for a in adapters)
        out["removed_base_recall"] = recall(removed_examples, None)
    if added:
        holds = [(a, set(rt.store.module_items(r.module_id, r.version))) for a, r in zip(adapters, reports)]
        out["added_recall"] = min((
            recall([e for _, ex, _ in added for e in ex if e.item_id in held], a) or 0.0
            for a, held in holds if any(it.id in held for it, _, _ in added)
        ), default=0.0)
    # No slack: the rebuilt modules recall no more of the removed items than the bare model does.
    ok = out.get("removed_recall", 0.0) <= (out.get("removed_base_recall") or 0.0)
    ok = ok and all(r.reached_target for r in reports)
    if added:
        ok = ok and (out["added_recall"] or 0.0) >= tcfg.target_recall
    out["passed"] = bool(ok)
    return out


def forget_namespace(store: ModuleStore, pool: AdapterPool | None, routers: Routers, namespace: str) -> list[str]:
    """Drop a namespace: its modules and the items kept for it (no model needed). Returns the dropped ids."""
    check_namespace(namespace)
    if namespace not in store.namespaces():
        raise KeyError(f"namespace {namespace!r} holds nothing; namespaces: {', '.join(store.namespaces()) or 'none'}")
    with store.write_lock():
        dropped = store.forget_namespace(namespace)
    for module_id in dropped:
        _unload(pool, routers, module_id)
    return dropped


def drop(store: ModuleStore, pool: AdapterPool | None, routers: Routers, module_id: str) -> None:
    """Drop one module (its items stay kept and can be written again)."""
    with store.write_lock():
        store.drop_module(module_id)
    _unload(pool, routers, module_id)


def _unload(pool: AdapterPool | None, routers: Routers, module_id: str) -> None:
    if pool is not None:
        pool.unload(module_id)
    routers.forget(module_id)


def same_key(old: Item, new: Item) -> bool:
    """Whether ``new`` is a new value of ``old``: the same ``metadata["key"]`` where either has one (what
    framework stores key values by), else the same fact slot, or the same document title."""
    if "key" in old.metadata or "key" in new.metadata:  # an explicit key is the identity: nothing else matches it
        return "key" in old.metadata and "key" in new.metadata and bool(old.metadata["key"] == new.metadata["key"])
    if isinstance(old, Fact) and isinstance(new, Fact):
        return (old.subject, old.relation, old.question) == (new.subject, new.relation, new.question)
    if isinstance(old, Document) and isinstance(new, Document):
        return new.title is not None and old.title == new.title
    return False


def key_text(item: Item) -> str:
    if isinstance(item, Fact):
        return f"subject {item.subject!r} and relation {item.relation!r}"
    return f"title {item.title!r}" if item.title else "an untitled document (pass replaces=)"
