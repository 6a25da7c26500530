"""Querying: which modules answer each question, then one batched generation (or scoring) pass.

    select   -> per question, the module versions that answer it (oracle ids, one module, the namespace's
                module, or the router's top-k), empty for the bare model
    plan     -> the rows of one batch (``compose``): one per question, or one per routed module (selection)
                and per prompt (the gate's closed-book and context prompts)
    generate -> one pass: one active adapter, a peft mixed-adapter batch, or one pass per adapter; then each
                question keeps its surest row (``compose.choose``)

``ask``, ``logprobs``, ``chat``, ``complete`` and ``stream_chat`` are the facade's read calls; the facade
holds the lock around them. Layer 4: over the runtime, never the facade.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from . import compose
from .compose import Selection
from .config import ReadConfig
from .locks import ModelLock
from .runtime import Runtime
from .store import ModuleInfo, check_namespace
from .types import Answer

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
    combine: str | None = None,
) -> list[Answer]:
    """``KnowledgeMemory.ask`` for a list of questions: see its docstring."""
    if not questions or any(not isinstance(q, str) or not q.strip() for q in questions):
        raise ValueError(f"question: expected a non-empty string or list of them, got {questions!r:.80}")
    how, _ = compose.modes(rt.settings.read, combine, merge)
    contexts = per_question("context", context, len(questions))
    selection, routed = select(rt, questions, namespace, module, modules, route, top_k, threshold)
    reader = "lora" + ("+context" if contexts is not None else "")
    buffered = short_term(rt, questions, namespace if module is None and modules is None else None)
    if any(ids for _, ids in buffered):  # the pending items most like each question, before any given context
        given = contexts or [None] * len(questions)
        contexts = ["\n".join(c for c in (b, g) if c) or None for (b, _), g in zip(buffered, given)]
        reader += "+pending"
    texts = [rt.prompt.prompt(q, None if contexts is None else contexts[i]) for i, q in enumerate(questions)]
    closed = None
    if how == "gate" and contexts is not None:
        closed = [None if c is None else rt.prompt.prompt(q, None) for q, c in zip(questions, contexts)]
    answers = _generate(rt, questions, texts, selection, routed, reader, max_new_tokens, merge, closed=closed)
    for answer, (_, ids) in zip(answers, buffered):
        if ids:
            answer.details["pending"] = ids
    return answers


def short_term(rt: Runtime, questions: list[str], namespace: str | None) -> list[tuple[str | None, list[str]]]:
    """Per question, the namespace's pending items that answer it (``loramem.buffer``): (context, ids)."""
    cfg = rt.settings.read
    if namespace is None or cfg.pending_k == 0:
        return [(None, []) for _ in questions]
    from .buffer import contexts

    return contexts(rt.store, questions, namespace, cfg.pending_k, cfg.pending_threshold)


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
    last = [last_user_message(c) for c in conversations]
    selection, routed = select(rt, last, namespace, module)
    buffered = short_term(rt, last, namespace if module is None else None)
    texts = [rt.prompt.render(with_pending(list(c), ctx)) for c, (ctx, _) in zip(conversations, buffered)]
    answers = _generate(rt, last, texts, selection, routed, "lora" + ("+pending" if any(i for _, i in buffered)
                                                                       else ""), max_new_tokens, None, stop)
    for answer, (_, ids) in zip(answers, buffered):
        if ids:
            answer.details["pending"] = ids
    return answers


def with_pending(conversation: list[dict[str, str]], context: str | None) -> list[dict[str, str]]:
    """The conversation with the buffer's context before its last user message (``text.with_context``)."""
    if context is None:
        return conversation
    from .text import with_context

    i = max(j for j, m in enumerate(conversation) if m.get("role") == "user")
    return [*conversation[:i], {**conversation[i], "content": with_context(conversation[i]["content"], context)},
            *conversation[i + 1:]]


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
    closed: Sequence[str | None] | None = None,
) -> list[Answer]:
    """One batch for every question's rows (``compose.plan``), then each question's surest row.

    ``closed``: the gate's closed-book prompts (None: no gate). Several modules per question are selected
    between (``ReadConfig.compose="select"``) unless ``merge`` is given or the config says merge.
    """
    _, how = compose.modes(rt.settings.read, None, merge)
    rows = compose.plan(questions, texts, closed, selection, how, rt.settings.read.select_margin)
    load_s = compose.run(rt, rows, read_config(rt, max_new_tokens), merge, stop)
    return compose.answers(questions, rows, selection, routed, reader, load_s)


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
    """``KnowledgeMemory.logprobs``: see its docstring.

    A question with several modules under selection scores each candidate with each of them and keeps, per
    candidate, the best score: the candidate's log-probability under the module surest of it (the rule
    ``ask`` selects by, applied to a given answer instead of a generated one).
    """
    from .read import answer_logprobs

    if reduce not in ("sum", "first", "mean"):
        raise ValueError(f"reduce: expected 'sum', 'first' or 'mean', got {reduce!r}")
    questions = list(questions)
    if len(candidates) != len(questions):
        raise ValueError(f"candidates: expected {len(questions)} lists (one per question), got {len(candidates)}")
    contexts = per_question("context", context, len(questions)) or [None] * len(questions)
    selection, _ = select(rt, questions, namespace, module, modules, route)
    _, how = compose.modes(rt.settings.read, None, merge)
    # Per question, the adapter rows that score it: each module (selection) or the one (merged) adapter.
    margin = rt.settings.read.select_margin
    sets = [[[i] for i, _ in compose.competing(sel, margin)] if how == "select" and len(sel) > 1
            else [[i for i, _ in sel]] for sel in selection]
    set_names = rt.pool.names_for([s for per_q in sets for s in per_q], merge)
    pairs, names, owner = [], [], []  # owner: (question, candidate) of each row
    k = 0
    for qi, (q, c, cands) in enumerate(zip(questions, contexts, candidates)):
        for _ in sets[qi]:
            for ci, cand in enumerate(cands):
                pairs.append((rt.prompt.prompt(q, c), cand))
                names.append(set_names[k])
                owner.append((qi, ci))
            k += 1
    pool = rt.pool
    flat = pool.run(names, lambda rows, kw: answer_logprobs(
        pool.model, rt.prompt.tokenizer, [pairs[i] for i in rows], rt.settings.read.batch_size, reduce, **kw))
    out: list[list[float]] = [[float("-inf")] * len(cands) for cands in candidates]
    for (qi, ci), value in zip(owner, flat):
        out[qi][ci] = max(out[qi][ci], value)
    return out


def stream_chat(
    rt: Runtime,
    lock: ModelLock,
    conversation: Sequence[dict[str, str]],
    namespace: str | None,
    *,
    module: str | None = None,
    max_new_tokens: int | None = None,
    stop: Sequence[str] | None = None,
) -> Iterator[str]:
    """Stream the next assistant turn of one conversation as text pieces.

    The module(s) are chosen before the first piece, so errors surface at once. The generation thread holds ``lock`` for the whole generation, so no other call can switch
    or evict the adapter mid-stream, whichever thread(s) the consumer reads the stream from. Selection needs
    whole answers before it can choose, so a stream routed to several modules under ``compose="select"``
    streams from the router's best module.
    """
    from .read import stream_text

    with lock:
        text = rt.prompt.render(list(conversation))
        selection, _ = select(rt, [last_user_message(conversation)], namespace, module)
        if compose.modes(rt.settings.read, None, None)[1] == "select":
            selection = [sel[:1] for sel in selection]
        model = rt.pool.model

    def locked_generate(**kwargs: Any) -> None:
        with lock:
            names = adapter_names(rt, selection)
            with rt.pool.activate(names):
                rt.pool.model.generate(**kwargs)

    yield from stream_text(model, rt.prompt, text, read_config(rt, max_new_tokens), stop=stop,
                           generate=locked_generate)
