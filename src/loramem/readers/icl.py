"""In-context learning: every item in the prompt, up to a token budget (the rest is dropped, and counted)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..text import render_context, render_item
from ..types import Item
from .base import Context


class ICLContext:
    """The same context for every question: items in order until ``token_budget`` tokens are used.

    Each answer's ``details`` says how many items were kept and dropped, and the context's length in tokens.
    """

    name = "icl"

    def __init__(self, tokenizer: Any, items: Sequence[Item | str], token_budget: int = 2048) -> None:
        if token_budget < 1:
            raise ValueError(f"token_budget: expected an int >= 1, got {token_budget}")
        if not items:
            raise ValueError("items: expected at least one item for the context, got none")
        self.token_budget = token_budget
        kept: list[str] = []
        sources: list[str] = []
        used = 0
        for item in items:
            text = render_item(item)
            n = len(tokenizer(text + "\n", add_special_tokens=False)["input_ids"])
            if used + n > token_budget:
                continue  # a shorter later item may still fit
            kept.append(text)
            sources.append(item if isinstance(item, str) else item.id)
            used += n
        self.text = render_context(kept)
        self.sources = sources
        self.details = {"context_items": len(kept), "dropped_items": len(items) - len(kept), "context_tokens": used,
                        "token_budget": token_budget}

    @classmethod
    def for_memory(cls, memory: Any, items: Sequence[Item | str], token_budget: int = 2048) -> ICLContext:
        return cls(memory.tokenizer, items, token_budget)

    def contexts(self, questions: Sequence[str]) -> list[Context]:
        return [Context(self.text, list(self.sources), dict(self.details)) for _ in questions]
