"""Rule-based synthesis for documents: sentences become cloze questions, wh-questions, restatements and the
original text.

No model is involved, so it is fast and deterministic, and weaker than an LLM synthesizer: it can only ask
about spans it can find by shape. Per sentence:

- cloze questions (``max_cloze_per_sentence``) on numbers and dates, capitalised names and the closing phrase;
- wh-questions in the words a user asks (``synth.questions``: "What is Maya allergic to?", and the reverse
  "Who is allergic to peanuts?"), for sentences of a shape it knows. ``wh_questions`` phrasings are trained
  (format qa), taken round-robin over the sentence's answers (main question, its other answers, the reverse),
  so a small budget still asks every answer once. When a sentence has two or more phrasings, one phrasing of
  its main question is held out first: ``Example(doc.id, "heldout", question, answer)``, never trained
  (``Example.trained`` is False), asked only to report recall in words the module never saw. Which one is
  drawn from a ``random.Random`` seeded by ``SynthConfig.seed`` and the document id: the same write holds out
  the same phrasing.

The recall probe of each sentence (what decides when training stops) stays its first cloze question by
default, so recall stopping is as before. ``SynthConfig.wh_probe`` makes it the sentence's first trained
wh-question instead: more natural for short memories, whose users ask wh-questions and never a cloze, at the
cost of training until those are recalled; sentences without a wh-question keep the cloze probe either way.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from ..config import SynthConfig
from ..types import Document, Example, Item
from .questions import Question, document_questions, groups

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


def pick_wh(questions: Sequence[Question], n: int, rng: random.Random) -> tuple[list[Question], Question | None]:
    """The ``n`` phrasings to train and the one to hold out (None when there are fewer than two phrasings).

    The held-out phrasing comes from the first answer group with two or more phrasings (the main question: every
    shape writes it so), so every answer keeps a trained phrasing (were there no such group, the first answer
    would give its only one); the trained ones are taken round-robin over the answer groups, each group
    shuffled, the main question first."""
    if n <= 0 or not questions:
        return [], None
    gs = [list(g) for g in groups(questions)]
    held = None
    if len(questions) >= 2:
        pool = next((g for g in gs if len(g) >= 2), gs[0])
        held = pool.pop(rng.randrange(len(pool)))
    order = [rng.sample(g, len(g)) for g in gs]
    trained: list[Question] = []
    while len(trained) < n and any(order):
        for g in order:
            if g and len(trained) < n:
                trained.append(g.pop(0))
    return trained, held


class RuleSynthesizer:
    name = "rules"

    def examples(self, item: Item, config: SynthConfig) -> list[Example]:
        if not isinstance(item, Document):
            raise TypeError(f"rule synthesis takes a Document, got {type(item).__name__}")
        doc, out = item, []
        source = doc.title or "the document"
        sents = sentences(doc.text)
        rng = random.Random(f"{config.seed}:{doc.id}")
        wh_rng = random.Random(f"{config.seed}:wh:{doc.id}")  # its own stream: the rewrite order is unchanged
        qa = "qa" in config.formats
        # Cloze questions always exist: trained on with format qa, otherwise only used to measure recall.
        fmt = "qa" if qa else "probe"
        whs = document_questions(sents) if config.wh_questions > 0 else [[] for _ in sents]
        for sent, wh in zip(sents, whs):
            trained, held = pick_wh(wh, config.wh_questions, wh_rng)
            wh_probe = config.wh_probe and qa and bool(trained)
            for j, span in enumerate(cloze_spans(sent, max(1, config.max_cloze_per_sentence))):
                blanked = sent.replace(span, "____", 1)
                q = f"In {source}: {blanked}\nWhat goes in the blank?"
                # The first cloze of each sentence measures recall (unless a wh-question does); the others only train.
                out.append(Example(doc.id, fmt, q, span, probe=(j == 0 and not wh_probe)))
            if qa:
                out += [Example(doc.id, "qa", w.text, w.answer, probe=(k == 0 and wh_probe)) for k, w in enumerate(trained)]
            if held is not None:
                out.append(Example(doc.id, "heldout", held.text, held.answer))
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
