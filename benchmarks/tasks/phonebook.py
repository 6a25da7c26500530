"""PhoneBook, as in the paper: invented names (~15% with a title), ``NNN-NNN-NNNN`` numbers.

Sized in entries (``size``) or, with ``tokens=``, by a token budget of the paper's training line
(``Question: What is the phone number of {Name}? Answer: {Phone}``) under the model's tokenizer.
Scored on the digits of the first phone-shaped string in the answer. ``groups=n`` splits the book into n
sectors (one module each), like the paper's 16 sectors of the 128K file.
"""

from __future__ import annotations

from typing import Any

from loramem.phonebook import phone_correct, phone_digits, phonebook
from loramem.readers.icl import render_item
from loramem.types import Answer, Fact

from . import register_task
from .base import Question, TaskData


def line(fact: Fact) -> str:
    """The paper's training line; the same text the ICL and RAG readers put in the prompt."""
    return render_item(fact)


class PhoneBookTask:
    name = "phonebook"
    primary = "correct"

    def build(self, size: int = 0, seed: int = 0, *, tokens: int | None = None, tokenizer: Any = None,
              groups: int = 1, **options: Any) -> TaskData:
        if tokens is not None:
            if tokenizer is None:
                raise ValueError("phonebook: tokens= needs tokenizer= to count tokens")
            size = entries_for_tokens(tokens, tokenizer, seed)
        if size < 1:
            raise ValueError(f"phonebook: expected size >= 1 entries (or tokens=), got {size}")
        if groups < 1 or groups > size:
            raise ValueError(f"phonebook: groups must be in [1, size={size}], got {groups}")
        facts = phonebook(size, seed=seed)
        sectors = {f"sector{g:02d}": [f.id for f in facts[g::groups]] for g in range(groups)}
        where = {fid: g for g, ids in sectors.items() for fid in ids}
        questions = [
            Question(id=f"pb{i}", text=f.canonical_question, answers=[f.object], item_ids=[f.id], group=where[f.id])
            for i, f in enumerate(facts)
        ]
        meta: dict[str, Any] = {"entries": size, "seed": seed, "groups": groups}
        if tokenizer is not None:
            meta["tokens"] = sum(len(tokenizer(line(f), add_special_tokens=False)["input_ids"]) for f in facts)
        return TaskData(self.name, list(facts), questions, sectors, meta)

    def score(self, question: Question, answer: Answer) -> dict[str, float]:
        return {"correct": float(phone_correct(answer.text, question.answers[0])),
                "phone_found": float(phone_digits(answer.text) is not None)}


def entries_for_tokens(tokens: int, tokenizer: Any, seed: int = 0) -> int:
    """How many entries fit a token budget of training lines (grows the book until the next entry would not fit)."""
    n, used = 0, 0
    for f in phonebook(max(16, tokens // 8), seed=seed):
        cost = len(tokenizer(line(f), add_special_tokens=False)["input_ids"])
        if used + cost > tokens:
            break
        used += cost
        n += 1
    return max(n, 1)


register_task("phonebook", PhoneBookTask)
