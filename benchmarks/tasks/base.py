"""What a benchmark task is: knowledge items to memorise, questions about them, and how to score an answer.

A task builds a ``TaskData`` for a size and a seed. The runner writes ``items`` into LoRA modules (one per
``groups`` entry when a run asks for several modules), gives them to ICL/RAG readers, asks ``questions``
through every reader alike, and scores each answer with ``task.score``. Questions with ``candidates`` are
also scored by log-probability (``reader.score``): correct when the first candidate, the expected answer,
beats every other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from loramem.types import Answer, Item


@dataclass
class Question:
    id: str
    text: str
    answers: list[str]  # gold answers; the first is the reference for text metrics
    item_ids: list[str] = field(default_factory=list)  # items that hold the answer (provenance, oracle routing)
    kind: str = "recall"  # longdoc: recall|comprehension|inference; counterfact: efficacy|paraphrase|neighbourhood
    group: str | None = None  # the group (module) that holds the answer, for oracle routing
    candidates: list[str] | None = None  # [expected, *others] for log-probability scoring
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskData:
    task: str
    items: list[Item]
    questions: list[Question]
    groups: dict[str, list[str]] = field(default_factory=dict)  # group id -> item ids (one module each)
    meta: dict[str, Any] = field(default_factory=dict)  # size, seed, knowledge tokens, ...
    preserve: list[str] = field(default_factory=list)  # prompts the write must leave alone (write(preserve=))

    def __post_init__(self) -> None:
        ids = {it.id for it in self.items}
        if not self.groups:
            self.groups = {"all": [it.id for it in self.items]}
        for g, members in self.groups.items():
            unknown = [m for m in members if m not in ids]
            if unknown:
                raise ValueError(f"group {g!r} names items that are not in the task: {unknown[:3]}")
        for q in self.questions:
            if not q.answers:
                raise ValueError(f"question {q.id!r} has no gold answer")
            if q.candidates is not None and len(q.candidates) < 2:
                raise ValueError(f"question {q.id!r}: candidates need the expected answer and at least one other")

    def items_of(self, group: str) -> list[Item]:
        members = set(self.groups[group])
        return [it for it in self.items if it.id in members]


class Task(Protocol):
    name: str
    #: the metric the summary tables lead with ("correct" for phonebook/counterfact, "rougeL" for longdoc)
    primary: str

    def build(self, size: int, seed: int = 0, **options: Any) -> TaskData:
        """``size``: the task's own unit (phonebook: entries; counterfact: facts; longdoc: documents)."""
        ...

    def score(self, question: Question, answer: Answer) -> dict[str, float]:
        """Metrics of one generated answer (values in [0, 1] unless the name says otherwise)."""
        ...
