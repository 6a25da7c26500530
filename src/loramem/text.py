"""Text utilities every layer shares: chunking, how an item reads in a prompt, how a context is put together
and put before a question, and the texts that say what an item is about (topic grouping and router keys).
Layer 0: imports only ``types``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .types import Document, Fact, Item

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def chunk_text(text: str, chunk_size: int = 128, overlap: int = 16) -> list[str]:
    """Split into chunks of about ``chunk_size`` words at sentence ends; consecutive chunks share ``overlap`` words.

    A sentence longer than a chunk is split at word boundaries.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected an int >= 1, got {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise ValueError(f"overlap: expected 0 <= overlap < chunk_size ({chunk_size}), got {overlap}")
    words_per_sentence = []
    for sent in _SENTENCE.split(text.strip()):
        words = sent.split()
        while len(words) > chunk_size:
            words_per_sentence.append(words[:chunk_size])
            words = words[chunk_size:]
        if words:
            words_per_sentence.append(words)
    chunks: list[str] = []
    current: list[str] = []
    for words in words_per_sentence:
        if current and len(current) + len(words) > chunk_size:
            chunks.append(" ".join(current))
            current = current[-overlap:] if overlap else []
        current = current + words
    if current:
        chunks.append(" ".join(current))
    return chunks



def render_item(item: Item | str) -> str:
    """How an item reads in a prompt: a fact as its question and answer, a document as its (titled) text."""
    if isinstance(item, str):
        return item
    if isinstance(item, Fact):
        return f"Question: {item.canonical_question} Answer: {item.canonical_answer}"
    if isinstance(item, Document):
        return f"{item.title}\n{item.text}" if item.title else item.text
    raise TypeError(f"expected a Fact, a Document or a string, got {type(item).__name__}")



def render_context(parts: Sequence[Item | str]) -> str:
    """The context text for a list of items or chunks, in order: each as ``render_item`` writes it, one per line.

    The one builder of context text. Training (context-mixed examples), the RAG and ICL readers and the
    framework integrations all call it, so a module trained with a context sees byte for byte what it is later
    read with: a module taught on one layout and asked in another copies from the context instead of recalling.
    """
    return "\n".join(render_item(p) for p in parts)


def with_context(question: str, context: str | None) -> str:
    """The user turn for a question with a context: the context, a blank line, the question (None: the question).

    ``PromptFormat.prompt`` and the integrations' chains build the user message through this, for the same
    reason as ``render_context``: one layout for training and reading."""
    return question if context is None else f"{context}\n\n{question}"


def item_key(item: Item) -> str:
    """The text that says what an item is about (for topic grouping)."""
    if isinstance(item, Fact):
        return f"{item.subject} {item.relation}"
    if isinstance(item, Document):
        head = item.text[:300]
        return f"{item.title}. {head}" if item.title else head
    raise TypeError(f"expected a Fact or a Document, got {type(item).__name__}")



def item_keys(item: Item, passage_words: int = 48) -> list[str]:
    """Texts a question about ``item`` should resemble."""
    if isinstance(item, Fact):
        return [item.canonical_question, f"{item.subject} {item.relation}"]
    if isinstance(item, Document):
        keys = [item.title] if item.title else []
        return keys + chunk_text(item.text, passage_words, 8)
    raise TypeError(f"expected a Fact or a Document, got {type(item).__name__}")
