"""The one reader class: a KnowledgeMemory asked with or without a module, with or without a context source.

    base      = MemoryReader(mem)                                  # the bare model (control)
    lora      = MemoryReader(mem, namespace="docs")                # the module(s) of a namespace
    icl       = MemoryReader(mem, context=ICLContext(mem, items))  # everything in the prompt
    lora+rag  = MemoryReader(mem, namespace="docs", context=RAGContext(index, k=3))

The benchmark runner and the integrations only see ``answer`` and ``score`` (the ``Reader`` protocol).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..types import Answer

if TYPE_CHECKING:
    from ..memory import KnowledgeMemory


@dataclass
class Context:
    """Text to put before one question, with where it came from."""

    text: str
    sources: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class ContextSource(Protocol):
    name: str

    def contexts(self, questions: Sequence[str]) -> list[Context]: ...


class MemoryReader:
    """Answers through ``KnowledgeMemory.ask``: ``namespace`` None is the bare model, ``context`` adds RAG/ICL."""

    def __init__(
        self,
        memory: KnowledgeMemory,
        *,
        namespace: str | None = None,
        context: ContextSource | None = None,
        name: str | None = None,
        max_new_tokens: int | None = None,
        combine: str | None = None,
    ) -> None:
        self.memory = memory
        self.namespace = namespace
        self.context = context
        self.max_new_tokens = max_new_tokens
        self.combine = combine  # how the context meets the memory (``ask(combine=)``); None: ReadConfig's
        parts = (["lora"] if namespace is not None else []) + ([context.name] if context is not None else [])
        self.name = name or ("+".join(parts) or "base") + (f"@{combine}" if combine and context is not None else "")

    def _contexts(self, questions: list[str]) -> tuple[list[Context] | None, float]:
        if self.context is None:
            return None, 0.0
        t0 = time.perf_counter()
        ctx = self.context.contexts(questions)
        if len(ctx) != len(questions):
            raise RuntimeError(f"context source {self.context.name!r} returned {len(ctx)} contexts for {len(questions)} questions")
        return ctx, time.perf_counter() - t0

    def answer(self, questions: Sequence[str], **kwargs: Any) -> list[Answer]:
        """Batched answers; ``kwargs`` go to ``KnowledgeMemory.ask`` (e.g. ``modules=`` for oracle routing)."""
        qs = _questions(questions)
        ctx, ctx_s = self._contexts(qs)
        kwargs.setdefault("max_new_tokens", self.max_new_tokens)
        if self.combine is not None and ctx is not None:
            kwargs.setdefault("combine", self.combine)
        answers = self.memory.ask(qs, self.namespace, context=[c.text for c in ctx] if ctx else None, **kwargs)
        for i, a in enumerate(answers):
            a.reader = self.name
            if ctx is not None:
                a.details["combine"] = kwargs.get("combine") or self.memory.read_config.combine
                a.sources = ctx[i].sources
                a.details.update(ctx[i].details)
                a.timings["context"] = ctx_s / len(qs)
        return answers

    def score(self, questions: Sequence[str], candidates: Sequence[Sequence[str]], **kwargs: Any) -> list[list[float]]:
        """Log-probability of each candidate answer (``reduce="first"`` for CounterFact efficacy)."""
        qs = _questions(questions)
        ctx, _ = self._contexts(qs)
        return self.memory.logprobs(qs, candidates, self.namespace, context=[c.text for c in ctx] if ctx else None, **kwargs)

    def __repr__(self) -> str:
        return f"MemoryReader(name={self.name!r}, namespace={self.namespace!r})"


def _questions(questions: Sequence[str]) -> list[str]:
    if isinstance(questions, str):
        raise TypeError("questions: expected a list of strings, got a single string (wrap it in a list)")
    qs = list(questions)
    if not qs or any(not isinstance(q, str) or not q.strip() for q in qs):
        raise ValueError(f"questions: expected a non-empty list of non-empty strings, got {qs!r:.80}")
    return qs
