"""Querying: which modules answer each question, then one batched generation (or scoring) pass.

    select   -> per question, the module versions that answer it (oracle ids, one module, the namespace's
                module, or the router's top-k), empty for the bare model
    names    -> one adapter per question from the pool (loaded, or merged for a set of modules)
    generate -> one pass: one active adapter, a peft mixed-adapter batch, or one pass per adapter

``ask``, ``logprobs``, ``chat``, ``complete`` and ``stream_chat`` are the facade's read calls; the facade
holds the lock around them. Layer 4: over the runtime, never the facade.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .config import ReadConfig
from .runtime import Runtime
from .store import ModuleInfo, check_namespace
from .types import Answer

Selection = list[list[tuple[ModuleInfo, float]]]  # per question: (module version, routing score), best first
ModulesArg = Sequence[str | Sequence[str] | None] | None


def select(
    rt: Runtime,
    questions: list[str],
    namespace: str | None,
    module: str | None = None,
    modules: ModulesArg = None,
    route: str | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
) -> tuple[Selection, bool]:
    """Per question, the module versions that answer it with their routing scores (empty: bare model),
    and whether a router chose them."""
    store = rt.store
    if modules is not None:
        if isinstance(modules, str) or len(modules) != len(questions):
            raise ValueError(f"modules: expected a list of {len(questions)} entries (one per question), got {modules!r:.80}")
        by_id: dict[str, ModuleInfo] = {}
        out: Selection = []
        for entry in modules:
            ids = [] if entry is None else [entry] if isinstance(entry, str) else list(entry)
            for mid in ids:
                if mid not in by_id:
                    by_id[mid] = store.module(mid)
            out.append([(by_id[mid], 1.0) for mid in ids])
        return out, False
    if module is not None:
        info = store.module(module)
        return [[(info, 1.0)] for _ in questions], False
    if namespace is None:
        return [[] for _ in questions], False
    check_namespace(namespace)
    infos = store.modules(namespace)
    if not infos and namespace not in store.namespaces():
        known = ", ".join(store.namespaces()) or "none"
        raise KeyError(f"namespace {namespace!r} holds nothing; namespaces in this store: {known}")
    if len(infos) <= 1 and route is None:
        return [[(i, 1.0) for i in infos] for _ in questions], False
    by_id = {i.module_id: i for i in infos}
    routes = rt.routers.get(route, top_k, threshold).route(questions, infos)
    return [[(by_id[mid], score) for mid, score in r] for r in routes], True


def adapter_names(rt: Runtime, selection: Selection, merge: str | None = None) -> list[str]:
    return rt.pool.names_for([[info for info, _ in sel] for sel in selection], merge)


def read_config(rt: Runtime, max_new_tokens: int | None) -> ReadConfig:
    cfg = rt.settings.read
    if max_new_tokens is None:
        return cfg
    return ReadConfig.from_dict({**cfg.to_dict(), "max_new_tokens": max_new_tokens})


def per_question(name: str, value: str | Sequence[str | None] | None, n: int) -> list[str | None] | None:
    """A value given once or once per question, as one per question (None stays None)."""
    if value is None:
        return None
    out: list[str | None] = [value] * n if isinstance(value, str) else list(value)
    if len(out) != n:
        raise ValueError(f"{name}: expected {n} entries (one per question), got {len(out)}")
    return out


def ask(
    rt: Runtime,
    questions: list[str],
    namespace: str | None,
    *,
    module: str | None = None,
    modules: ModulesArg = None,
    route: str | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
    merge: str | None = None,
    context: str | Sequence[str | None] | None = None,
    max_new_tokens: int | None = None,
) -> list[Answer]:
    """``KnowledgeMemory.ask`` for a list of questions: see its docstring."""
    if not questions or any(not isinstance(q, str) or not q.strip() for q in questions):
        raise ValueError(f"question: expected a non-empty string or list of them, got {questions!r:.80}")
    contexts = per_question("context", context, len(questions))
    selection, routed = select(rt, questions, namespace, module, modules, route, top_k, threshold)
    texts = [rt.prompt.prompt(q, None if contexts is None else contexts[i]) for i, q in enumerate(questions)]
    reader = "lora" + ("+context" if contexts is not None else "")
    return _generate(rt, questions, texts, selection, routed, reader, max_new_tokens, merge)


def chat(
    rt: Runtime,
    conversations: Sequence[Sequence[dict[str, str]]],
    namespace: str | None,
    *,
    module: str | None = None,
    max_new_tokens: int | None = None,
    stop: Sequence[str] | None = None,
) -> list[Answer]:
    """The next assistant turn of each conversation; a split namespace routes by the last user message."""
    if not conversations:
        raise ValueError("conversations: expected at least one conversation, got none")
    texts = [rt.prompt.render(list(c)) for c in conversations]
    last = [last_user_message(c) for c in conversations]
    selection, routed = select(rt, last, namespace, module)
    return _generate(rt, last, texts, selection, routed, "lora", max_new_tokens, None, stop)


def complete(
    rt: Runtime,
    prompts: Sequence[str],
    namespace: str | None,
    *,
    module: str | None = None,
    max_new_tokens: int | None = None,
    stop: Sequence[str] | None = None,
) -> list[Answer]:
    """Raw continuations of already formatted prompts (no chat template)."""
    if not prompts or any(not isinstance(p, str) or not p for p in prompts):
        raise ValueError(f"prompts: expected a non-empty list of non-empty strings, got {prompts!r:.80}")
    selection, routed = select(rt, list(prompts), namespace, module)
    return _generate(rt, list(prompts), list(prompts), selection, routed, "lora", max_new_tokens, None, stop)


def last_user_message(conversation: Sequence[dict[str, str]]) -> str:
    """What routes a conversation: its last user message ("?" when there is none)."""
    return next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "") or "?"


def _generate(
    rt: Runtime,
    questions: list[str],
    texts: list[str],
    selection: Selection,
    routed: bool,
    reader: str,
    max_new_tokens: int | None,
    merge: str | None,
    stop: Sequence[str] | None = None,
) -> list[Answer]:
    from .read import generate_texts

    t0 = time.perf_counter()
    names = adapter_names(rt, selection, merge)
    load_s = time.perf_counter() - t0
    cfg = read_config(rt, max_new_tokens)
    pool = rt.pool
    outs = pool.run(names, lambda rows, kw: generate_texts(
        pool.model, rt.prompt, [texts[i] for i in rows], cfg, stop=stop, **kw))
    answers = []
    for q, sel, g in zip(questions, selection, outs):
        details: dict[str, Any] = {}
        if routed:
            details["route"] = [[i.module_id, round(score, 4)] for i, score in sel]
        answers.append(Answer(
            question=q, text=g.text, modules=[i.module_id for i, _ in sel],
            reader=reader if sel else reader.replace("lora", "base"),
            timings={"generate": g.seconds, "load": load_s / max(1, len(questions))},
            usage={"input_tokens": g.input_tokens, "output_tokens": g.output_tokens}, details=details,
        ))
    return answers


def logprobs(
    rt: Runtime,
    questions: Sequence[str],
    candidates: Sequence[Sequence[str]],
    namespace: str | None,
    *,
    module: str | None = None,
    modules: ModulesArg = None,
    route: str | None = None,
    merge: str | None = None,
    context: str | Sequence[str | None] | None = None,
    reduce: str = "sum",
) -> list[list[float]]:
    """``KnowledgeMemory.logprobs``: see its docstring."""
    from .read import answer_logprobs

    if reduce not in ("sum", "first", "mean"):
        raise ValueError(f"reduce: expected 'sum', 'first' or 'mean', got {reduce!r}")
    questions = list(questions)
    if len(candidates) != len(questions):
        raise ValueError(f"candidates: expected {len(questions)} lists (one per question), got {len(candidates)}")
    contexts = per_question("context", context, len(questions)) or [None] * len(questions)
    selection, _ = select(rt, questions, namespace, module, modules, route)
    q_names = adapter_names(rt, selection, merge)
    pairs, names = [], []
    for q, c, cands, name in zip(questions, contexts, candidates, q_names):
        for cand in cands:
            pairs.append((rt.prompt.prompt(q, c), cand))
            names.append(name)
    pool = rt.pool
    flat = pool.run(names, lambda rows, kw: answer_logprobs(
        pool.model, rt.prompt.tokenizer, [pairs[i] for i in rows], rt.settings.read.batch_size, reduce, **kw))
    out: list[list[float]] = []
    for cands in candidates:
        out.append(flat[: len(cands)])
        flat = flat[len(cands) :]
    return out


def stream_chat(
    rt: Runtime,
    lock: threading.RLock,
    conversation: Sequence[dict[str, str]],
    namespace: str | None,
    *,
    module: str | None = None,
    max_new_tokens: int | None = None,
    stop: Sequence[str] | None = None,
) -> Iterator[str]:
    """Stream the next assistant turn of one conversation as text pieces.

    The module(s) are chosen before the first piece, so errors surface at once. The generation thread holds ``lock`` for the whole generation, so no other call can switch
    or evict the adapter mid-stream, whichever thread(s) the consumer reads the stream from.
    """
    from .read import stream_text

    with lock:
        text = rt.prompt.render(list(conversation))
        selection, _ = select(rt, [last_user_message(conversation)], namespace, module)
        model = rt.pool.model

    def locked_generate(**kwargs: Any) -> None:
        with lock:
            names = adapter_names(rt, selection)
            with rt.pool.activate(names):
                rt.pool.model.generate(**kwargs)

    yield from stream_text(model, rt.prompt, text, read_config(rt, max_new_tokens), stop=stop,
                           generate=locked_generate)
