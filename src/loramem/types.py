"""The data that flows through loramem: knowledge items in, training examples, answers and reports out.

Items have stable content ids: the same fact written twice is the same item, whatever its metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union, runtime_checkable


def _content_id(prefix: str, payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return f"{prefix}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _nonempty(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: expected a non-empty string, got {value!r}")


@dataclass(frozen=True)
class Fact:
    """A (subject, relation, object) triple, e.g. ("Dr. Alma Vance", "phone number", "555-201-7733").

    ``question`` overrides the canonical question ("What is the {relation} of {subject}?") and ``answer``
    the canonical answer (the object). Both take ``{subject}``, ``{relation}``, ``{object}`` placeholders.
    """

    subject: str
    relation: str
    object: str
    question: str | None = None
    answer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("subject", "relation", "object"):
            _nonempty(name, getattr(self, name))
        if self.question is not None:
            _nonempty("question", self.question)
        if self.answer is not None:
            _nonempty("answer", self.answer)

    @property
    def id(self) -> str:
        return _content_id(
            "fact",
            {"s": self.subject, "r": self.relation, "o": self.object, "q": self.question, "a": self.answer},
        )

    def fill(self, template: str) -> str:
        return template.format(subject=self.subject, relation=self.relation, object=self.object)

    @property
    def canonical_question(self) -> str:
        return self.fill(self.question) if self.question else f"What is the {self.relation} of {self.subject}?"

    @property
    def canonical_answer(self) -> str:
        return self.fill(self.answer) if self.answer else self.object

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": self.subject, "relation": self.relation, "object": self.object}
        if self.question:
            out["question"] = self.question
        if self.answer:
            out["answer"] = self.answer
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass(frozen=True)
class Document:
    """Free text (a note, an article, a chat transcript). ``title`` helps questions name their source."""

    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _nonempty("text", self.text)

    @property
    def id(self) -> str:
        return _content_id("doc", {"t": self.text, "title": self.title})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.title:
            out["title"] = self.title
        if self.metadata:
            out["metadata"] = self.metadata
        return out


Item = Union[Fact, Document]


def item_from_dict(data: Any) -> Item:
    """Build a Fact (subject/relation/object keys) or a Document (text key) from a JSON object."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}: {data!r:.80}")
    if "text" in data:
        return Document(text=data["text"], title=data.get("title"), metadata=dict(data.get("metadata") or {}))
    missing = [k for k in ("subject", "relation", "object") if k not in data]
    if missing:
        raise ValueError(
            f"expected keys subject/relation/object (a fact) or text (a document), missing {missing} in {data!r:.80}"
        )
    return Fact(
        subject=data["subject"],
        relation=data["relation"],
        object=data["object"],
        question=data.get("question"),
        answer=data.get("answer"),
        metadata=dict(data.get("metadata") or {}),
    )


def as_items(items: Any) -> list[Item]:
    """A Fact, a Document or an iterable of them as a non-empty list; anything else is a TypeError."""
    if isinstance(items, (Fact, Document)):
        return [items]
    if isinstance(items, (str, bytes)):
        raise TypeError("items: expected Fact/Document objects, got a string; wrap text in Document(text=...)")
    try:
        out = list(items)
    except TypeError:
        raise TypeError(f"items: expected a Fact, a Document or a list of them, got {type(items).__name__}") from None
    if not out:
        raise ValueError("items: expected at least one Fact or Document, got an empty list")
    for i, it in enumerate(out):
        if not isinstance(it, (Fact, Document)):
            raise TypeError(f"items[{i}]: expected Fact or Document, got {type(it).__name__}: {it!r:.60}")
    return out


# Formats a write never trains on. "probe": asked to measure recall (Example.probe). "heldout": a phrasing kept
# out of training on purpose, asked only to report how recall carries to words never seen (reported apart).
UNTRAINED_FORMATS: tuple[str, ...] = ("probe", "heldout")


@dataclass(frozen=True)
class Example:
    """One training example. ``prompt`` None means plain text trained with loss on every token.

    ``context`` (text put before the question, as ``ask(context=...)`` puts it) teaches a module to answer with
    retrieved text in the prompt: from the context when it holds the answer, from memory when it does not."""

    item_id: str
    format: str
    prompt: str | None
    completion: str
    probe: bool = False  # True: used to measure recall of its item (and to decide when training stops)
    context: str | None = None

    @property
    def trained(self) -> bool:
        """Whether a write trains on it: not the untrained formats (``probe``, ``heldout``)."""
        return self.format not in UNTRAINED_FORMATS

    def __post_init__(self) -> None:
        if self.context is not None and self.prompt is None:
            raise ValueError(f"context: expected None for a plain-text example (prompt None), got {self.context!r:.60}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "format": self.format,
            "prompt": self.prompt,
            "completion": self.completion,
            "probe": self.probe,
            "context": self.context,
        }


@dataclass
class Answer:
    """What a reader returns for one question."""

    question: str
    text: str
    modules: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    reader: str = "lora"
    usage: dict[str, int] = field(default_factory=dict)  # input_tokens, output_tokens
    details: dict[str, Any] = field(default_factory=dict)  # reader-specific: context kept/dropped, route scores

    def __str__(self) -> str:
        return self.text


@dataclass
class WriteReport:
    """What one ``write()`` did: where the items went, what it cost and how well they are recalled."""

    namespace: str
    module_id: str
    version: int
    items_written: int
    items_total: int
    examples: int
    steps: int
    epochs: float
    tokens_trained: int
    knowledge_tokens: int
    recall: float
    reached_target: bool
    seconds: float
    tokens_per_second: float
    trainable_params: int
    timings: dict[str, float] = field(default_factory=dict)
    parts: list[WriteReport] = field(default_factory=list)  # one per module when a write changed several
    details: dict[str, Any] = field(default_factory=dict)  # e.g. forget/update verification
    slipped: list[str] = field(default_factory=list)  # ids of items not recalled when the version committed

    def summary(self) -> str:
        if self.parts:
            head = (f"{self.items_written} new item(s) across {len(self.parts)} modules "
                    f"({self.knowledge_tokens} knowledge tokens) in {self.seconds:.1f}s; min recall {self.recall:.1%}")
            return "\n".join([head, *("  " + p.summary() for p in self.parts)])
        hit = "reached" if self.reached_target else "did NOT reach"
        slipped = f"; {len(self.slipped)} item(s) not recalled: {', '.join(self.slipped[:5])}" if self.slipped else ""
        return (
            f"{self.items_written} new item(s) -> {self.module_id} v{self.version} "
            f"({self.items_total} items, {self.knowledge_tokens} knowledge tokens); recall {self.recall:.1%} "
            f"({hit} target) after {self.steps} steps / {self.tokens_trained} tokens in {self.seconds:.1f}s "
            f"({self.tokens_per_second:.0f} tok/s){slipped}"
        )


ReaderKind = Literal["base", "lora", "icl", "rag", "lora+rag", "lora+icl"]


@runtime_checkable
class Reader(Protocol):
    """Every way of answering (LoRA memory, RAG, ICL, hybrids, the bare model) answers the same way."""

    name: str

    def answer(self, questions: Sequence[str], **kwargs: Any) -> list[Answer]: ...

    def score(self, questions: Sequence[str], candidates: Sequence[Sequence[str]], **kwargs: Any) -> list[list[float]]:
        """Log-probability of each candidate answer to each question (what the reader would say, scored)."""
        ...
