"""Rule-based synthesis for documents: sentences become cloze questions, restatements and the original text.

No model is involved, so it is fast and deterministic, and weaker than an LLM synthesizer: it can only ask
about spans it can find by shape (numbers and dates, capitalised names, the sentence's last phrase).
"""

from __future__ import annotations

import random
import re

from ..config import SynthConfig
from ..types import Document, Example, Item

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_NUMBER = re.compile(r"\b\d[\d,./:-]*\d\b|\b\d\b")
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:of|de|van|von|the)?\s*[A-Z][a-z]+)*\b")
_TAIL = re.compile(r"(\b[\w'-]+(?:\s+[\w'-]+){0,3})[.!?]?\s*$")
_STOP = {"The", "A", "An", "In", "On", "At", "It", "He", "She", "They", "This", "That", "There", "When", "After"}


def sentences(text: str) -> list[str]:
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        para = " ".join(para.split())
        out.extend(s.strip() for s in _SENT.split(para) if len(s.strip()) > 3)
    return out


def cloze_spans(sentence: str, limit: int) -> list[str]:
    """Spans worth asking about, most specific first: numbers/dates, then names, then the closing phrase."""
    spans: list[str] = []
    spans += [m.group(0) for m in _NUMBER.finditer(sentence)]
    spans += [m.group(0) for m in _NAME.finditer(sentence) if m.start() > 0 or m.group(0) not in _STOP]
    tail = _TAIL.search(sentence)
    if tail:
        spans.append(tail.group(1))
    seen: list[str] = []
    for s in spans:
        s = s.strip()
        if s and s not in seen and s not in _STOP and len(s) < len(sentence) - 3:
            seen.append(s)
    return seen[:limit]


class RuleSynthesizer:
    name = "rules"

    def examples(self, item: Item, config: SynthConfig) -> list[Example]:
        if not isinstance(item, Document):
            raise TypeError(f"rule synthesis takes a Document, got {type(item).__name__}")
        doc, out = item, []
        source = doc.title or "the document"
        sents = sentences(doc.text)
        rng = random.Random(f"{config.seed}:{doc.id}")
        # Cloze questions always exist: trained on with format qa, otherwise only used to measure recall.
        fmt = "qa" if "qa" in config.formats else "probe"
        for sent in sents:
            for j, span in enumerate(cloze_spans(sent, max(1, config.max_cloze_per_sentence))):
                blanked = sent.replace(span, "____", 1)
                q = f"In {source}: {blanked}\nWhat goes in the blank?"
                # The first cloze of each sentence measures recall; the others only train.
                out.append(Example(doc.id, fmt, q, span, probe=(j == 0)))
        if "qa" in config.formats:
            for a, b in zip(sents, sents[1:]):
                out.append(Example(doc.id, "qa", f"In {source}, what follows: \"{a}\"", b))
        if "original" in config.formats:
            out.append(Example(doc.id, "original", None, doc.text.strip()))
        if "rewrite" in config.formats:
            restated = [f"{source} says: {s}" for s in sents]
            rng.shuffle(restated)
            out.append(Example(doc.id, "rewrite", None, "\n".join(restated)))
        if "summary" in config.formats:
            raise ValueError("format 'summary' needs an LLM synthesizer")
        if not any(e.probe for e in out) and sents:
            out.append(Example(doc.id, "probe", f"What does {source} say?", sents[0], probe=True))
        return out
