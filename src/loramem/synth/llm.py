"""LLM-backed synthesis: any callable ``str -> str`` or LangChain chat model writes the training data.

The paper found that a strong generator's QA, rewrites and summaries internalise far better than raw text.
Off by default: pass ``llm=`` to ``KnowledgeMemory.write``.

For documents the LLM is asked what rule synthesis asks of its patterns (``synth.questions``): questions in the
words a user would use, ``wh_questions + 1`` phrasings of each fact, and the reverse question where a fact reads
both ways. Each fact's phrasings come back as ``Q:`` lines over one ``A:`` line; its first phrasing is the recall
probe, and when it has two or more, one drawn by seed and document id is held out (format ``heldout``, never
trained), as rule synthesis does per sentence.
"""

from __future__ import annotations

import random
import re
from typing import Any

from ..config import SynthConfig
from ..types import Document, Example, Fact, Item

QA_PROMPT = (
    "Write the questions a user would ask about the text below, in everyday words (What, Who, Where, When, How "
    "many ... questions, never fill-in-the-blank), covering every fact, at most {n} facts. Ask each fact in {k} "
    "different phrasings. Where a fact reads both ways, also ask it the other way round as a fact of its own "
    "(for 'Maya's daughter is Lily': 'Who is Maya's daughter?' -> Lily, and 'Whose daughter is Lily?' -> "
    "Maya). Each question must make sense on its own (name the subject, not 'the text'). Use exactly this "
    "format, the phrasings of one fact on Q: lines, then its short answer on one A: line:\n"
    "Q: <question>\nQ: <the same question in other words>\nA: <short answer>\n\nText ({source}):\n{text}"
)
PARAPHRASE_PROMPT = (
    "Write {n} different ways to ask this question, one per line, nothing else:\n{question}"
)
REWRITE_PROMPT = "Rewrite the text below in different words, keeping every fact, name, number and date.\n\n{text}"
SUMMARY_PROMPT = "Summarise the text below in a few sentences, keeping names, numbers and dates.\n\n{text}"

_LINE = re.compile(r"^\s*(?:\d+[.)]\s*|[-*]\s*)?(Q|A)\s*[:.]\s*(.*?)\s*$")


def call_llm(llm: Any, prompt: str) -> str:
    """Call a plain callable, or anything LangChain-like with ``invoke`` (chat models return a message)."""
    if hasattr(llm, "invoke"):
        out = llm.invoke(prompt)
    elif callable(llm):
        out = llm(prompt)
    else:
        raise TypeError(f"llm: expected a callable or an object with .invoke, got {type(llm).__name__}")
    text = getattr(out, "content", out)
    if isinstance(text, list):  # content blocks
        text = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in text)
    if not isinstance(text, str):
        raise TypeError(f"llm returned {type(text).__name__}, expected text")
    return text


def parse_questions(text: str) -> list[tuple[list[str], str]]:
    """``Q:`` lines over an ``A:`` line -> (the phrasings, the answer) per fact; other lines are ignored."""
    out: list[tuple[list[str], str]] = []
    qs: list[str] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        if m.group(1) == "Q":
            if m.group(2):
                qs.append(m.group(2))
        else:
            if qs and m.group(2):
                out.append((qs, m.group(2)))
            qs = []
    return out


def parse_qa(text: str) -> list[tuple[str, str]]:
    """Every (question, answer) pair of a reply, each phrasing its own pair."""
    return [(q, a) for qs, a in parse_questions(text) for q in qs]


class LLMSynthesizer:
    name = "llm"

    def __init__(self, llm: Any, questions_per_item: int = 8) -> None:
        if llm is None:
            raise ValueError("LLMSynthesizer needs llm=<callable or chat model>")
        self.llm = llm
        self.questions_per_item = questions_per_item

    def examples(self, item: Item, config: SynthConfig) -> list[Example]:
        if isinstance(item, Fact):
            return self._fact(item, config)
        if not isinstance(item, Document):
            raise TypeError(f"expected Fact or Document, got {type(item).__name__}")
        doc, out = item, []
        source = doc.title or "untitled"
        # Questions are always generated: trained on with format qa, otherwise only used to measure recall.
        n = config.wh_questions
        prompt = QA_PROMPT.format(n=self.questions_per_item, k=n + 1 if n else 1, source=source, text=doc.text)
        rng = random.Random(f"{config.seed}:wh:{doc.id}")
        qa = "qa" in config.formats
        for qs, a in parse_questions(call_llm(self.llm, prompt)):
            held = qs.pop(rng.randrange(len(qs))) if n and len(qs) >= 2 else None
            for i, q in enumerate(qs[: max(1, n)] if qa else qs[:1]):
                out.append(Example(doc.id, "qa" if qa else "probe", q, a, probe=(i == 0)))
            if held is not None:
                out.append(Example(doc.id, "heldout", held, a))
        if "original" in config.formats:
            out.append(Example(doc.id, "original", None, doc.text.strip()))
        if "rewrite" in config.formats:
            out.append(Example(doc.id, "rewrite", None, call_llm(self.llm, REWRITE_PROMPT.format(text=doc.text)).strip()))
        if "summary" in config.formats:
            out.append(Example(doc.id, "summary", None, call_llm(self.llm, SUMMARY_PROMPT.format(text=doc.text)).strip()))
        return [e for e in out if e.completion]

    def _fact(self, fact: Fact, config: SynthConfig) -> list[Example]:
        answer = fact.canonical_answer
        out = [Example(fact.id, "qa", fact.canonical_question, answer, probe=True)]
        if config.qa_paraphrases > 1:
            text = call_llm(self.llm, PARAPHRASE_PROMPT.format(n=config.qa_paraphrases - 1, question=fact.canonical_question))
            lines = [re.sub(r"^\s*(\d+[.)]|[-*])\s*", "", ln).strip() for ln in text.splitlines()]
            out += [Example(fact.id, "qa", ln, answer) for ln in lines if ln.endswith("?")][: config.qa_paraphrases - 1]
        return out
