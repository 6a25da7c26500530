"""Composition: several answers to one question in one batch, and the rule that keeps one of them.

Two ways a question gets more than one candidate answer, both rows of one generation pass:

- **selection** (``ReadConfig.compose="select"``, the default for top-k > 1): a question routed to k modules
  becomes a row per module whose routing score is within ``ReadConfig.select_margin`` of the best (a peft
  mixed-adapter batch, ``adapter_names=``). No weights are combined,
  so modules trained from different random starts cannot interfere (merging them adds cross terms B_i A_j:
  it recalls almost nothing on memorisation modules, see the README).
- **the gate** (``ask(..., context=..., combine="gate")``): with a context, each module row is answered twice,
  closed-book (no context) and with the context. A module trained on bare questions copies some number out
  of a context; the gate keeps its closed-book answer when it is surer of that one.

The confidence rule, one for both: the **mean log-likelihood per generated token** of each answer under its
own prompt and its own adapter (end-of-turn token included), measured during generation (``read``'s
``scores=True``, no second pass). The mean, not the sum, so a long answer is not penalised for its length.
The highest wins. Ties: the context side wins over the closed-book side (the caller asked for that evidence,
and its answer can cite its sources), then the router's order (its best-scored module first).

Layer 4: over the runtime and the read loop, never the facade.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import COMBINE_MODES, COMPOSE_MODES, ReadConfig
from .runtime import Runtime
from .store import ModuleInfo
from .types import Answer

if TYPE_CHECKING:
    from .read import Generated

Selection = list[list[tuple[ModuleInfo, float]]]  # per question: (module version, routing score), best first
SIDES = ("closed", "context")  # the gate's two prompts; "stack" is the one prompt when nothing is gated


@dataclass
class Candidate:
    """One row of the batch: question ``question`` answered by ``infos`` (one module, a merged set, or none)."""

    question: int
    infos: list[ModuleInfo]
    side: str  # "stack" (the caller's prompt), or the gate's "closed" / "context"
    text: str  # the formatted prompt
    answer: str = ""
    score: float | None = None
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


def check_mode(name: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"{name}: expected one of {valid}, got {value!r}")
    return value


def modes(cfg: ReadConfig, combine: str | None, merge: str | None) -> tuple[str, str]:
    """(combine, compose) for one call: ``combine`` or the config's; an explicit ``merge`` means merge."""
    combine = check_mode("combine", cfg.combine if combine is None else combine, COMBINE_MODES)
    compose = "merge" if merge is not None else check_mode("compose", cfg.compose, COMPOSE_MODES)
    return combine, compose


def choose(candidates: Sequence[Candidate]) -> int:
    """Index of the candidate kept: the highest score; ties to the context side, then the earliest (router order).

    A candidate without a score (only one row, nothing to compare) is kept as it is.
    """
    if len(candidates) == 1:
        return 0
    side_rank = {"context": 0, "stack": 0, "closed": 1}

    def key(i: int) -> tuple[float, int, int]:
        c = candidates[i]
        score = float("-inf") if c.score is None else c.score
        return (-score, side_rank[c.side], i)

    return min(range(len(candidates)), key=key)


def competing(routed: list[tuple[ModuleInfo, float]], margin: float | None) -> list[tuple[ModuleInfo, float]]:
    """The routed modules that compete on confidence under selection: those whose routing score is within
    ``margin`` of the best one (all of them when ``margin`` is None). A module the router ranks clearly lower
    does not get to answer: a memorisation module is sure of its own facts whatever it is asked."""
    if margin is None or len(routed) <= 1:
        return routed
    best = max(score for _, score in routed)
    return [(info, score) for info, score in routed if score >= best - margin]


def plan(questions: Sequence[str], prompts: Sequence[str], closed: Sequence[str | None] | None, selection: Selection,
         compose: str, margin: float | None = None) -> list[Candidate]:
    """The rows of the batch, question by question, in router order.

    ``prompts``: each question's prompt as the caller asked it (with its context, if any); ``closed``: the
    closed-book prompt of each gated question (None where it has no context to gate, or no gate at all);
    ``margin``: ``ReadConfig.select_margin`` (see ``competing``).
    """
    rows: list[Candidate] = []
    for i in range(len(questions)):
        routed = competing(selection[i], margin) if compose == "select" else selection[i]
        infos = [info for info, _ in routed]
        sets = [[info] for info in infos] if compose == "select" and len(infos) > 1 else [infos]
        shut = closed[i] if closed else None
        sides = [("stack", prompts[i])] if shut is None else [("closed", shut), ("context", prompts[i])]
        rows += [Candidate(i, s, side, text) for side, text in sides for s in sets]
    return rows


def run(rt: Runtime, rows: list[Candidate], cfg: ReadConfig, merge: str | None,
        stop: Sequence[str] | None = None) -> float:
    """Generate every row in one pass (one adapter per row); fills answers and scores. Returns load seconds
    of the adapters loaded in-process (rows a vLLM server answers, under ``ReadConfig.engine="vllm"``, load none)."""
    from .read import generate_texts

    per_q: dict[int, int] = {}
    for r in rows:
        per_q[r.question] = per_q.get(r.question, 0) + 1
    scores = any(n > 1 for n in per_q.values())  # only a choice needs the scores
    outs: list[Generated | None] = [None] * len(rows)
    if cfg.engine == "vllm":
        from . import engine

        try:
            outs = engine.generate(rt.store, rt.prompt, [r.text for r in rows], [r.infos for r in rows], cfg, stop)
        except engine.EngineUnavailable as exc:
            engine.unavailable(cfg, exc)  # raises, or warns that these rows answer in-process
    local = [i for i, g in enumerate(outs) if g is None]  # every row in-process, or merged rows a server lacks
    pool, load_s = rt.pool, 0.0
    if local:
        t0 = time.perf_counter()
        names = pool.names_for([rows[i].infos for i in local], merge)
        load_s = time.perf_counter() - t0
        done = pool.run(names, lambda idx, kw: generate_texts(
            pool.model, rt.prompt, [rows[local[i]].text for i in idx], cfg, stop=stop, scores=scores, **kw))
        for i, g in zip(local, done):
            outs[i] = g
    for r, g in zip(rows, outs):
        assert g is not None
        r.answer, r.score, r.seconds = g.text, g.logprob, g.seconds
        r.input_tokens, r.output_tokens = g.input_tokens, g.output_tokens
    return load_s


def answers(questions: Sequence[str], rows: list[Candidate], selection: Selection, routed: bool, reader: str,
            load_s: float) -> list[Answer]:
    """One ``Answer`` per question: the kept row's text and module, every candidate in ``details``.

    ``details["select"]``: ``[module_id, score, text]`` per module of the winning side, in router order;
    ``details["gate"]``: the best closed-book and context rows and which one won. ``timings`` and ``usage``
    add up every row generated for the question (what the choice cost).
    """
    by_q: dict[int, list[Candidate]] = {}
    for r in rows:
        by_q.setdefault(r.question, []).append(r)
    out = []
    for i, q in enumerate(questions):
        cands = by_q[i]
        best = cands[choose(cands)]
        details: dict[str, Any] = {}
        if best.infos:  # which version answered: a read during a write uses the old one until the commit
            details["versions"] = {info.module_id: info.version for info in best.infos}
        if routed:
            details["route"] = [[info.module_id, round(score, 4)] for info, score in selection[i]]
        same_side = [c for c in cands if c.side == best.side]
        if len(same_side) > 1:
            details["select"] = [[c.infos[0].module_id, _round(c.score), c.answer] for c in same_side]
        if best.side in SIDES:
            sides = {s: [c for c in cands if c.side == s] for s in SIDES}
            top = {s: cs[choose(cs)] for s, cs in sides.items()}
            details["gate"] = {"chosen": best.side, "closed": _round(top["closed"].score),
                               "context": _round(top["context"].score), "closed_text": top["closed"].answer,
                               "context_text": top["context"].answer}
        out.append(Answer(
            question=q, text=best.answer, modules=[info.module_id for info in best.infos],
            reader=reader if best.infos else reader.replace("lora", "base"),
            timings={"generate": sum(c.seconds for c in cands), "load": load_s / max(1, len(questions))},
            usage={"input_tokens": sum(c.input_tokens for c in cands),
                   "output_tokens": sum(c.output_tokens for c in cands)},
            details=details,
        ))
    return out


def _round(score: float | None) -> float | None:
    return None if score is None else round(score, 4)
