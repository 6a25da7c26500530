"""Writing: items in, a new module version out (synthesize, plan, train, commit).

    write(rt, items, namespace)
      -> synthesize training examples for the items not held yet
      -> plan: which module(s) receive them (``loramem.plan``)
      -> per module: train a new version (from the previous version's weights, replaying what it holds),
         then commit it atomically with its manifest row (``ModuleStore.commit_version``)

``write_module`` is also how edits rebuild a module (from fresh weights, without the removed items).
Layer 4: over the runtime (store, adapter pool, prompt builder), never the facade.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .config import LoraSpec, ModelConfig, Settings, SynthConfig, TrainConfig
from .incremental import Incremental, warn_below_target
from .plan import Assignment
from .runtime import Runtime
from .store import ModuleInfo, check_namespace
from .types import Document, Example, Fact, Item, WriteReport, as_items


def write(
    rt: Runtime,
    items: Fact | Document | Iterable[Fact | Document],
    namespace: str,
    *,
    module: str | None = None,
    split: bool | None = None,
    lora: LoraSpec | None = None,
    train: TrainConfig | None = None,
    synth: SynthConfig | None = None,
    llm: Any | None = None,
    preserve: Sequence[str] | None = None,
    executor: Any | None = None,
) -> WriteReport:
    """``KnowledgeMemory.write``: see its docstring. ``executor`` (``loramem.fanout``) trains the modules of a
    plan that holds several as parallel jobs, each from the store as it was before the write; the versions are
    committed here, one transaction each, in plan order."""
    new_items = as_items(items)
    check_namespace(namespace)
    if module is not None:
        check_namespace(module)
    tcfg = train or rt.settings.train
    scfg = synth or rt.settings.synth
    store = rt.store
    t_start = time.perf_counter()
    with store.write_lock():
        lock_wait = time.perf_counter() - t_start
        current = store.modules(namespace)
        for info in current:
            rt.pool.check_base(info)
        held = {i: m.module_id for m in current for i in store.module_items(m.module_id, m.version)}
        new = [it for it in dedupe(new_items) if it.id not in held]
        if module is not None:
            mine = [m for m in current if m.module_id == module]
            if not mine and any(m.module_id == module for m in store.modules()):
                raise ValueError(f"module {module!r} belongs to another namespace than {namespace!r}")
            new = [it for it in new if held.get(it.id) != module]
        if not new:
            target = [m for m in current if module is None or m.module_id == module]
            if target:
                return noop_report(target[0], namespace, time.perf_counter() - t_start)
            others = sorted({held[it.id] for it in new_items if it.id in held})
            raise ValueError(f"every item is already held by module(s) {others} of namespace {namespace!r}; "
                             f"forget() them there first to move them to module {module!r}")

        from .synth import synthesize

        t0 = time.perf_counter()
        # Distractors for the context-mixed examples: what the namespace holds plus the other new items.
        new_examples = synthesize(new, scfg, llm=llm, namespace_items=store.items(namespace) if scfg.context_mix else ())
        synth_s = time.perf_counter() - t0
        if module is not None:
            dest = next((m for m in current if m.module_id == module), None)
            assignments = [Assignment(dest, module, lora or rt.settings.lora, new, f"module={module} given")]
        else:
            assignments = plan(rt, namespace, current, new, new_examples, lora, split)
        def examples_of(a: Assignment) -> list[Example]:
            ids = {it.id for it in a.items}
            return [e for e in new_examples if e.item_id in ids]

        if executor is not None and len(assignments) > 1:
            jobs = [WriteJob(str(store.root), job_model(rt), rt.settings, namespace, a, examples_of(a), tcfg, scfg,
                             list(preserve or ()), synth_s) for a in assignments]
            reports = [commit_trained(rt, t) for t in executor.train(jobs)]
        else:
            reports = [write_module(rt, namespace, a, examples_of(a), tcfg, scfg, preserve=list(preserve or ()),
                                    synth_seconds=synth_s) for a in assignments]
    return combine_reports(reports, lock_wait, synth_s, time.perf_counter() - t_start)


@dataclasses.dataclass
class WriteJob:
    """One module of a write plan, as a worker trains it (``loramem.fanout.run_job``). Everything in it pickles."""

    store: str
    model: ModelConfig
    settings: Settings
    namespace: str
    assignment: Assignment
    new_examples: list[Example]
    train: TrainConfig
    synth: SynthConfig
    preserve: list[str]
    synth_seconds: float


def job_model(rt: Runtime) -> ModelConfig:
    if rt.model_config is None:
        raise ValueError("fanning a write out needs a base model the workers can load by name; this memory was "
                         "opened with an in-memory (model, tokenizer) pair: pass model= a name or folder instead")
    return rt.model_config


def plan(
    rt: Runtime,
    namespace: str,
    current: list[ModuleInfo],
    new: list[Item],
    new_examples: list[Example],
    lora: LoraSpec | None,
    split: bool | None,
) -> list[Assignment]:
    """Which module each new item goes to (see ``loramem.plan``); ``split`` None follows ``PlanConfig.split``."""
    from .plan import plan_write

    cfg = rt.settings.plan
    capacity = rt.capacity() if (cfg.split if split is None else split) else None
    return plan_write(rt.store, rt.prompt, namespace, current, new, new_examples, lora or rt.settings.lora, cfg,
                      capacity, rank_given=lora is not None)


def write_module(
    rt: Runtime, namespace: str, a: Assignment, new_examples: list[Example], tcfg: TrainConfig, scfg: SynthConfig,
    *, fresh: bool = False, keep: list[str] | None = None, removed: list[str] | None = None,
    edit: bool = False, preserve: Sequence[str] = (), synth_seconds: float = 0.0,
) -> WriteReport:
    """Train and commit one module version holding its previous items (or ``keep``) plus ``a.items``.

    ``fresh``: start from new adapter weights instead of the previous version's (rebuilds after a delete).
    ``edit`` (update) and ``preserve`` (prompts the caller wants left alone) turn the preservation term on
    when ``kl_weight`` is None; see ``preservation``. ``synth_seconds``: what synthesizing the new examples took
    (done once per write, before planning), counted in the version's ``write_seconds``.
    """
    return commit_trained(rt, train_module(rt, namespace, a, new_examples, tcfg, scfg, fresh=fresh, keep=keep,
                                           removed=removed, edit=edit, preserve=preserve,
                                           synth_seconds=synth_seconds))


@dataclasses.dataclass
class Trained:
    """A module version trained and not committed yet: what ``train_module`` hands to ``commit_trained``, in
    this process or back from a worker (``loramem.fanout``). Everything in it pickles."""

    namespace: str
    module_id: str
    spec: LoraSpec
    peft_cfg: Any
    state: dict[str, Any]
    trainable: int
    knowledge: int
    recall: float
    fields: dict[str, Any]  # the version's report row
    new_items: list[Item]
    new_examples: list[Example]
    held: list[str]  # every item id the version holds
    report: WriteReport  # version 0 until committed


def train_module(
    rt: Runtime, namespace: str, a: Assignment, new_examples: list[Example], tcfg: TrainConfig, scfg: SynthConfig,
    *, fresh: bool = False, keep: list[str] | None = None, removed: list[str] | None = None,
    edit: bool = False, preserve: Sequence[str] = (), synth_seconds: float = 0.0,
) -> Trained:
    """``write_module`` up to the commit: train the version and measure it; the store is only read."""
    from .train import count_knowledge_tokens

    t_start = time.perf_counter()
    info = a.info
    spec = a.spec
    store = rt.store
    held = set(keep) if keep is not None else set(store.module_items(info.module_id, info.version)) if info else set()
    examples = store.examples(namespace, sorted(held)) + new_examples
    module_id = a.module_id or store.new_module_id(namespace)
    if info is not None and info.lora_spec != spec.to_dict():
        spec = LoraSpec.from_dict(info.lora_spec)  # a module keeps the spec it was created with
    warm = info is not None and spec.init != "pissa" and not fresh
    prev_state = store.load_adapter(info)[1] if warm and info is not None else None
    missed_before = info.report.get("missed") if info is not None else None
    incremental = Incremental(rt, tcfg, held, examples, new_examples, bounded=warm, missed_before=missed_before)
    with_context: dict[str, float] = {}
    t0 = time.perf_counter()
    tcfg, prompts, why = preservation(rt, namespace, a.items, held, examples, tcfg, edit, preserve)
    pres_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, peft_cfg, result, trainable = train_adapter(
        rt, module_id, spec, tcfg, incremental.first_round(), prev_state, prompts, more=incremental.next_round,
        round_config=incremental.round_config, before=incremental.baseline,
        after=lambda model: with_context.update(recall_with_context(
            rt, model, namespace, set() if incremental.bounded else held, a.items, examples, scfg)),
    )
    train_wall = time.perf_counter() - t0
    kl = [h["kl"] for h in result.history if "kl" in h]
    preserved = {"kl_weight": tcfg.kl_weight, "why": why, "prompts": result.preserve_prompts,
                 "last_kl": round(kl[-1], 6) if kl else None, "setup_seconds": round(pres_s + result.kl_setup_seconds, 3)}
    replay = incremental.summary()
    if not result.reached_target:
        warn_below_target(module_id, result.recall, tcfg.target_recall, incremental.slipped or incremental.missed)

    knowledge = count_knowledge_tokens(examples, rt.prompt)
    report_fields = {
        "steps": result.steps,
        "epochs": round(result.epochs, 3),
        "tokens_trained": result.tokens_trained,
        "train_seconds": round(result.train_seconds, 3),
        "eval_seconds": round(result.eval_seconds, 3),
        "padding_fraction": round(result.padding_fraction, 4),
        "reached_target": result.reached_target,
        "target_recall": tcfg.target_recall,
        "train_config": tcfg.to_dict(),
        "synth_config": scfg.to_dict(),
        "plan": a.reason,
        "preserve": preserved,
        "replay": replay,
        "missed": incremental.missed,  # what the next bounded write judges its slips against
        # What this version cost the writer, synthesis to commit (the save itself is a sliver): `loramem ls`.
        "write_seconds": round(synth_seconds + time.perf_counter() - t_start, 3),
        "base": rt.base,  # the checkpoint and the weights as loaded (the embedded model: dequantised Q4_1)
        **with_context,
        **({"removed": removed} if removed else {}),
    }
    report = WriteReport(
        namespace=namespace,
        module_id=module_id,
        version=0,
        items_written=len(a.items),
        items_total=len(held) + len(a.items),
        examples=len([e for e in examples if e.trained]),
        steps=result.steps,
        epochs=result.epochs,
        tokens_trained=result.tokens_trained,
        knowledge_tokens=knowledge,
        recall=result.recall,
        reached_target=result.reached_target,
        seconds=time.perf_counter() - t_start,
        tokens_per_second=result.tokens_per_second,
        trainable_params=trainable,
        timings={"train": result.train_seconds, "recall_checks": result.eval_seconds + replay["check_seconds"],
                 "train_wall": train_wall, "preserve_setup": preserved["setup_seconds"]},
        details={"preserve": preserved, "replay": replay, **with_context},
        slipped=list(incremental.slipped),
    )
    return Trained(namespace, module_id, spec, peft_cfg, state, trainable, knowledge, result.recall, report_fields,
                   list(a.items), list(new_examples), sorted(held | {it.id for it in a.items}), report)


def commit_trained(rt: Runtime, t: Trained) -> WriteReport:
    """Commit a trained version atomically (``ModuleStore.commit_version``); the caller holds the write lock."""
    t0 = time.perf_counter()
    version = rt.store.commit_version(
        module_id=t.module_id, namespace=t.namespace, adapter_config=t.peft_cfg, state=t.state,
        base_model=rt.model_name, base_fingerprint=rt.fingerprint, lora_spec=t.spec.to_dict(),
        trainable_params=t.trainable, knowledge_tokens=t.knowledge, recall=t.recall, report=t.fields,
        new_items=t.new_items, new_examples=t.new_examples, held_item_ids=t.held,
    )
    save_s = time.perf_counter() - t0
    rt.routers.forget(t.module_id)
    return dataclasses.replace(t.report, version=version, seconds=t.report.seconds + save_s,
                               timings={**t.report.timings, "save": save_s})


def preservation(
    rt: Runtime, namespace: str, written: list[Item], held: set[str], examples: list[Example], tcfg: TrainConfig,
    edit: bool, given: Sequence[str],
) -> tuple[TrainConfig, list[str], str]:
    """The train config with ``kl_weight`` resolved, the preservation prompts, and why the term is on or off.

    ``kl_weight`` None: ``edit_kl_weight`` for an edit, for a write given prompts, and for a write where the base
    model already knows at least ``known_share`` of the facts (``loramem.preserve.known``); else 0. The share,
    not "any fact", because the per-fact check is noisy: on the 135M model one invented fact in five looks known.
    """
    from .adapters import BASE
    from .preserve import known, preservation_prompts

    lam, why = tcfg.kl_weight, "kl_weight given"
    facts = [it for it in written if isinstance(it, Fact)]
    if lam is None and edit:
        lam, why = tcfg.edit_kl_weight, "update"
    elif lam is None and given:
        lam, why = tcfg.edit_kl_weight, "preserve= given"
    elif lam is None and facts:
        import random

        sample = facts if len(facts) <= tcfg.known_sample else random.Random(tcfg.seed).sample(facts, tcfg.known_sample)
        with rt.pool.activate([BASE]):
            flags = known(rt.pool.model, rt.prompt, sample, tcfg.known_logprob, tcfg.kl_tokens)
        on = sum(flags) >= tcfg.known_share * len(sample)
        lam = tcfg.edit_kl_weight if on else 0.0
        of = f" (a sample of the {len(facts)})" if len(sample) < len(facts) else ""
        why = f"base model knows {sum(flags)}/{len(sample)} facts{of} ({'>=' if on else '<'} known_share)"
    elif lam is None:
        lam, why = 0.0, "new knowledge (no facts to check)"
    tcfg = dataclasses.replace(tcfg, kl_weight=lam)
    if lam == 0:
        return tcfg, [], why
    kept = rt.store.items(namespace)
    trained = held | {it.id for it in written}
    prompts = preservation_prompts(
        written, [it for it in kept if it.id not in trained], given, [e.prompt for e in examples],
        tcfg.kl_neighbours, tcfg.seed, [it.subject for it in kept if it.id in trained and isinstance(it, Fact)],
    )
    return tcfg, prompts, why


def recall_with_context(
    rt: Runtime, model: Any, namespace: str, held: set[str], added: list[Item], examples: list[Example],
    scfg: SynthConfig,
) -> dict[str, float]:
    """Recall of the module's probes asked with a gold-plus-distractors context (teacher-forced, like the bare
    probes) of ``held`` and ``added``. Reported beside the bare recall, which alone decides when training stops: a
    module that recalls bare questions but copies from a context is what context-mixed training is for, so
    measure it. A bounded write passes no ``held`` (its added items only): the contexts are long, and asking
    every held item with one can cost a small write more than its training rounds."""
    from .synth import context_probes
    from .train import encode_all, exact_recall

    namespace_items = rt.store.items(namespace)
    mine = {*held, *(it.id for it in added)}
    items = [it for it in namespace_items if it.id in mine and it.id not in {a.id for a in added}] + list(added)
    probes = context_probes(items, examples, namespace_items, scfg)
    if not probes:
        return {}
    tcfg = rt.settings.train
    pad = rt.prompt.tokenizer.pad_token_id
    t0 = time.perf_counter()
    hits = exact_recall(model, encode_all(probes, rt.prompt, tcfg.seq_len), tcfg.seq_len, tcfg.batch_tokens,
                        pad if pad is not None else 0)
    return {"recall_with_context": round(sum(hits) / len(hits), 4), "recall_with_context_items": len(items),
            "recall_with_context_seconds": round(time.perf_counter() - t0, 3)}


def scrub_contexts(rt: Runtime, namespace: str, removed: set[str]) -> int:
    """Delete the kept items' context examples that quote a removed item (as a distractor), before a rebuild
    replays them: forgetting an item must leave its text nowhere in the store or the training data.
    Returns how many were deleted; the kept items keep their bare questions and their other contexts."""
    from .synth.context import mentions

    gone = rt.store.items(namespace, sorted(removed))
    if not gone:
        return 0
    keys = [(i, idx) for i, idx, ctx in rt.store.context_examples(namespace)
            if i not in removed and any(mentions(ctx, it) for it in gone)]
    if keys:
        rt.store.delete_examples(namespace, keys)
    return len(keys)


def train_adapter(
    rt: Runtime,
    module_id: str,
    spec: LoraSpec,
    tcfg: TrainConfig,
    examples: list[Example],
    prev_state: dict[str, Any] | None,
    preserve: Sequence[str] = (),
    after: Callable[[Any], None] | None = None,
    more: Callable[[Any, Any], list[Example]] | None = None,
    round_config: Callable[[TrainConfig], TrainConfig] | None = None,
    before: Callable[[Any], None] | None = None,
) -> tuple[dict[str, Any], Any, Any, int]:
    """Train a fresh adapter in the pool (from ``prev_state`` when given) and take it out again.

    ``more(model, result)`` runs after each round and returns the examples of another round (warm, same
    adapter), or [] to stop (``Incremental``); ``round_config(tcfg)`` gives each round's config (its learning
    rate). ``before(model)`` runs once the adapter is set up (from ``prev_state``) and active, before round 1.
    ``after(model)`` runs once trained, with the adapter still active (measurements for the report).
    Returns (state dict, peft config to save, ``TrainResult``, trainable parameters). A PiSSA adapter is
    stored as plain LoRA of rank 2r with the base weights put back, so engines load it unchanged.
    """
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from .adapters import adapter_stem
    from .models import ALIASES
    from .train import peft_config, pissa_to_lora, train

    pool = rt.pool
    name = f"{adapter_stem(module_id)}__training"
    torch.manual_seed(tcfg.seed)
    cfg = peft_config(pool.base, spec)
    snapshot = pool.snapshot_linear() if spec.init == "pissa" else None
    pool.add(name, cfg)
    try:
        if prev_state is not None:
            set_peft_model_state_dict(pool.peft, prev_state, adapter_name=name)
        initial = get_peft_model_state_dict(pool.peft, adapter_name=name) if snapshot is not None else None
        initial = {k: v.clone() for k, v in initial.items()} if initial else None

        def activate() -> int:
            pool.peft.set_adapter(name)
            trainable = 0
            for pname, p in pool.peft.named_parameters():
                mine = f".{name}." in pname or pname.endswith(f".{name}")
                p.requires_grad_(mine)
                trainable += p.numel() if mine else 0
            return trainable

        def between() -> None:
            # Reads waiting for the model run here, between two steps (not while PiSSA has the base weights
            # rewritten); they switch adapters and modes, so the training adapter is made active again.
            if rt.lock.handover():
                activate()
                pool.peft.train()

        trainable = activate()
        hand = between if snapshot is None else None
        config = round_config or (lambda c: c)
        if before is not None:
            before(pool.peft)
        result = train(pool.peft, rt.prompt, examples, config(tcfg), adapter_name=name, desc=f"write {module_id}",
                       preserve=preserve, between=hand)
        while more is not None and (again := more(pool.peft, result)):
            result = result.then(train(pool.peft, rt.prompt, again, config(tcfg), adapter_name=name,
                                       desc=f"repair {module_id}", preserve=preserve, between=hand))
        if after is not None:
            after(pool.peft)
        state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(pool.peft, adapter_name=name).items()}
        saved_cfg = pool.peft.peft_config[name]
        if snapshot is not None and initial is not None:
            # PiSSA changed the base weights; put them back and store the adapter as plain LoRA (rank 2r).
            pool.restore_linear(snapshot)
            state = pissa_to_lora(state, initial)
            scale = spec.lora_alpha / (spec.r**0.5 if spec.use_rslora else spec.r)
            saved_cfg = peft_config(pool.base, spec)
            saved_cfg.r = 2 * spec.r
            saved_cfg.lora_alpha = scale * 2 * spec.r
            saved_cfg.use_rslora = False
            saved_cfg.init_lora_weights = True
    except BaseException:
        if snapshot is not None:
            pool.restore_linear(snapshot)
        pool.remove(name)
        raise
    pool.remove(name)
    alias = ALIASES.get(rt.model_name)
    saved_cfg.base_model_name_or_path = alias.hub_id if alias else rt.model_name
    saved_cfg.inference_mode = True
    return state, saved_cfg, result, trainable


def dedupe(items: list[Item]) -> list[Item]:
    seen: dict[str, Item] = {}
    for it in items:
        seen.setdefault(it.id, it)
    return list(seen.values())


def combine_reports(reports: list[WriteReport], lock_wait: float, synth_s: float, total: float) -> WriteReport:
    """One report for a write that changed several modules (sums; the worst recall; each in ``parts``)."""
    if len(reports) == 1:
        r = reports[0]
        r.seconds = total
        r.timings = {"lock_wait": lock_wait, "synthesize": synth_s, **r.timings}
        return r
    train_s = sum(r.timings.get("train", 0.0) for r in reports)
    tokens = sum(r.tokens_trained for r in reports)
    first = reports[0]
    return WriteReport(
        namespace=first.namespace, module_id=first.module_id, version=first.version,
        items_written=sum(r.items_written for r in reports), items_total=sum(r.items_total for r in reports),
        examples=sum(r.examples for r in reports), steps=sum(r.steps for r in reports),
        epochs=max(r.epochs for r in reports), tokens_trained=tokens,
        knowledge_tokens=sum(r.knowledge_tokens for r in reports), recall=min(r.recall for r in reports),
        reached_target=all(r.reached_target for r in reports), seconds=total,
        tokens_per_second=tokens / train_s if train_s else 0.0,
        trainable_params=sum(r.trainable_params for r in reports),
        timings={"lock_wait": lock_wait, "synthesize": synth_s, "train": train_s}, parts=reports,
        slipped=[i for r in reports for i in r.slipped],
    )


def noop_report(info: ModuleInfo, namespace: str, seconds: float) -> WriteReport:
    """The report of a write that had nothing new to train."""
    return WriteReport(
        namespace=namespace, module_id=info.module_id, version=info.version, items_written=0, items_total=info.items,
        examples=0, steps=0, epochs=0.0, tokens_trained=0, knowledge_tokens=info.knowledge_tokens, recall=info.recall,
        reached_target=True, seconds=seconds, tokens_per_second=0.0, trainable_params=info.trainable_params,
    )
