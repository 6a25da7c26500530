"""LLM-backed synthesis: any callable ``str -> str`` or LangChain chat model writes the training data.

The paper found that a strong generator's QA, rewrites and summaries internalise far better than raw text.
Off by default: pass ``llm=`` to ``KnowledgeMemory.write``.
"""

from __future__ import annotations

import re
from typing import Any

from ..config import SynthConfig
from ..types import Document, Example, Fact, Item

QA_PROMPT = (
    "Write {n} question-answer pairs that together cover every fact in the text below. Each question must "
    "make sense on its own (name the subject, not 'the text'). Use exactly this format, one pair per two lines:\n"
    "Q: <question>\nA: <short answer>\n\nText ({source}):\n{text}"
)
PARAPHRASE_PROMPT = (
    "Write {n} different ways to ask this question, one per line, nothing else:\n{question}"
)
REWRITE_PROMPT = "Rewrite the text below in different words, keeping every fact, name, number and date.\n\n{text}"
SUMMARY_PROMPT = "Summarise the text below in a few sentences, keeping names, numbers and dates.\n\n{text}"

_QA = re.compile(r"^\s*Q\s*[:.]\s*(.+?)\s*\n\s*A\s*[:.]\s*(.+?)\s*$", re.MULTILINE)


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


def parse_qa(text: str) -> list[tuple[str, str]]:
    return [(q.strip(), a.strip()) for q, a in _QA.findall(text) if q.strip() and a.strip()]


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
        # QA pairs are always generated: trained on with format qa, otherwise only used to measure recall.
        pairs = parse_qa(call_llm(self.llm, QA_PROMPT.format(n=self.questions_per_item, source=source, text=doc.text)))
        fmt = "qa" if "qa" in config.formats else "probe"
        out += [Example(doc.id, fmt, q, a, probe=(i % 2 == 0)) for i, (q, a) in enumerate(pairs)]
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
