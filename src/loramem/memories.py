"""A shipped test set of one-sentence memories, each asked the way a person asks ("What food gives Maya Okonkwo
an allergic reaction?"), in words no synthesizer template writes.

``loramem/data/memories.jsonl``: one JSON object a line, ``id``, ``kind`` (relation, pet, place, work,
preference, health, object, skill, number, date), ``text`` (the memory, one sentence), ``questions`` (exactly
two) and ``answer`` (the string a correct reply contains, case-insensitive; it appears in the sentence). The
names are invented, so the base model cannot know the answers. ``tests/test_memories.py`` checks that no
question of the set is one the rule synthesizer writes for its memory: the set measures how recall carries to
a user's own words. The ``natural_questions`` benchmark writes it and asks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .types import Document

SHIPPED = Path(__file__).parent / "data" / "memories.jsonl"


@dataclass(frozen=True)
class Memory:
    """One memory of the set: ``text`` to write, ``questions`` to ask, ``answer`` a correct reply contains."""

    id: str
    kind: str
    text: str
    questions: tuple[str, ...]
    answer: str

    def __post_init__(self) -> None:
        if len(self.questions) != 2 or not all(isinstance(q, str) and q.strip() for q in self.questions):
            raise ValueError(f"memory {self.id}: expected exactly 2 non-empty questions, got {self.questions!r}")
        if not self.answer or self.answer.lower() not in self.text.lower():
            raise ValueError(f"memory {self.id}: expected an answer that appears in the text, got {self.answer!r}")

    @property
    def document(self) -> Document:
        """The memory as a Document to write (no title: a user's memory has none)."""
        return Document(self.text, metadata={"memory": self.id})

    def correct(self, reply: str) -> bool:
        """Whether a reply answers the memory: it contains the answer, case-insensitive."""
        return self.answer.lower() in reply.lower()


def load_memories(path: str | Path | None = None) -> list[Memory]:
    """The shipped memories (or those of another file in the same format), in file order."""
    source = Path(path) if path is not None else SHIPPED
    out = []
    for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Memory(row["id"], row["kind"], row["text"], tuple(row["questions"]), row["answer"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}:{n}: expected a memory (id, kind, text, questions, answer): {exc}") from None
    return out
