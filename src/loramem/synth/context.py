"""Context-mixed training data: the same questions with a context before them, as hybrid readers ask them.

A module trained only on bare questions, read with retrieved text in the prompt, copies an answer out of that
text (PhoneBook 64 entries: LoRA 0.97, LoRA+RAG 0.06). So some questions are also trained with a context:

  gold        the gold item (a fact's line, or the document chunk holding the answer) among distractors, shuffled
  distractor  distractors only: the answer must come from memory

Distractors come from the namespace's other items (same-relation facts first: they look most like the gold
line; other documents' chunks, then other chunks of the same document). When there are too few, look-alikes
of the same shape are invented (another subject, the same relation, a value with its digits and words
replaced), so a small namespace still trains the context behaviour. Contexts are built by
``text.render_context``, the function the RAG/ICL readers and the integrations use, so training and reading
see the same bytes. Everything is drawn from a ``random.Random`` seeded by the config seed and the item id.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Sequence

from ..config import SynthConfig
from ..phonebook import FIRST, LAST
from ..text import chunk_text, render_context, render_item
from ..types import Document, Example, Fact, Item

_NAMES = tuple(FIRST) + tuple(LAST)
_WORDS = ("amber", "river", "lantern", "copper", "meadow", "harbor", "violet", "marble", "thistle", "canyon",
          "saffron", "pebble", "orchard", "beacon", "willow", "cobalt", "juniper", "granite", "falcon", "velvet",
          "quarry", "tundra", "ember", "walnut", "glacier", "lagoon", "parsley", "summit", "hollow", "garnet")
_TOKEN = re.compile(r"[A-Za-z]+|\d")


def reshape(text: str, rng: random.Random) -> str:
    """A look-alike of ``text``: each digit a random digit, each word of 4+ letters another word of its case.

    Short words (of, the, Dr) and punctuation stay, so the look-alike has the original's shape."""

    def swap(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok.isdigit():
            return str(rng.randrange(10))
        if len(tok) <= 3:
            return tok
        word = rng.choice(_NAMES) if tok[0].isupper() else rng.choice(_WORDS)
        return word.upper() if tok.isupper() and len(tok) > 1 else word

    return _TOKEN.sub(swap, text)


def lookalike_fact(fact: Fact, rng: random.Random) -> Fact:
    """The same relation (and question/answer templates) with an invented subject and a value of the same shape."""
    for _ in range(8):
        other = dataclasses.replace(fact, subject=reshape(fact.subject, rng), object=reshape(fact.object, rng),
                                    metadata={})
        if other.subject != fact.subject:
            return other
    return dataclasses.replace(fact, subject=f"{fact.subject} {rng.choice(_NAMES)}", metadata={})


class DistractorPool:
    """The items distractors are drawn from: the namespace's held items plus the other new items of a write."""

    def __init__(self, items: Sequence[Item], config: SynthConfig) -> None:
        unique = {it.id: it for it in items}
        self.config = config
        self.facts = sorted((it for it in unique.values() if isinstance(it, Fact)), key=lambda f: f.id)
        self.docs = sorted((it for it in unique.values() if isinstance(it, Document)), key=lambda d: d.id)
        self._chunks: dict[str, list[str]] = {}

    def chunks(self, doc: Document) -> list[str]:
        """A document's chunks exactly as ``RAGIndex.build`` cuts them (overlap: an eighth of the size)."""
        if doc.id not in self._chunks:
            size = self.config.context_chunk_words
            self._chunks[doc.id] = chunk_text(render_item(doc), size, size // 8)
        return self._chunks[doc.id]

    def fact_distractors(self, fact: Fact, k: int, rng: random.Random) -> list[Item]:
        """``k`` other facts, same relation first (the hardest to tell apart), then look-alikes."""
        others = [f for f in self.facts if f.id != fact.id and (f.subject, f.relation) != (fact.subject, fact.relation)]
        same = [f for f in others if f.relation == fact.relation]
        rest = [f for f in others if f.relation != fact.relation]
        picked: list[Item] = rng.sample(same, min(k, len(same)))
        picked += rng.sample(rest, min(k - len(picked), len(rest)))
        while len(picked) < k:
            picked.append(lookalike_fact(fact, rng))
        return picked

    def doc_distractors(self, doc: Document, answer: str, k: int, rng: random.Random) -> list[str]:
        """``k`` chunks: other documents' first, then this document's chunks without the answer, then look-alikes."""
        # A document with the same title is an older value of this one (update()): never a distractor.
        foreign = [c for d in self.docs if d.id != doc.id and (d.title is None or d.title != doc.title)
                   for c in self.chunks(d) if answer not in c]
        picked = rng.sample(foreign, min(k, len(foreign)))
        own = [c for c in self.chunks(doc) if answer not in c]
        picked += rng.sample(own, min(k - len(picked), len(own)))
        while len(picked) < k:
            picked.append(reshape(gold_chunk(self.chunks(doc), "", answer), rng))
        return picked


def mentions(context: str, item: Item, window: int = 8) -> bool:
    """Whether a context quotes ``item``: a fact's line, or any ``window`` consecutive words of a document
    (whatever chunk size the context was cut with). ``forget`` uses it to drop contexts that quote a removed item."""
    if isinstance(item, Fact):
        return render_item(item) in context.split("\n")
    words = render_item(item).split()
    ctx = " " + " ".join(context.split()) + " "
    return any(" " + " ".join(words[i : i + window]) + " " in ctx for i in range(max(1, len(words) - window + 1)))


def gold_chunk(chunks: Sequence[str], question: str, answer: str) -> str:
    """The chunk that holds the answer: it contains the answer and shares the most words with the question."""
    q_words = set(re.findall(r"\w+", question.lower()))

    def score(chunk: str) -> tuple[bool, int]:
        return answer in chunk, len(q_words & set(re.findall(r"\w+", chunk.lower())))

    return max(chunks, key=score)


def _round(x: float) -> int:
    return int(x + 0.5)  # half up: 2 questions x 0.5 is one


def build_context(item: Item, example: Example, pool: DistractorPool, gold: bool, rng: random.Random) -> str:
    """A context for ``example``'s question: the gold item/chunk among distractors (``gold``), or distractors only."""
    cfg = pool.config
    k = rng.randint(cfg.min_distractors, cfg.max_distractors)
    parts: list[Item | str]
    if isinstance(item, Fact):
        parts = list(pool.fact_distractors(item, k, rng))
        if gold:
            parts.append(item)
    elif isinstance(item, Document):
        parts = list(pool.doc_distractors(item, example.completion, k, rng))
        if gold:
            parts.append(gold_chunk(pool.chunks(item), example.prompt or "", example.completion))
    else:
        raise TypeError(f"expected a Fact or a Document, got {type(item).__name__}")
    rng.shuffle(parts)
    return render_context(parts)


def eligible(item: Item, examples: Sequence[Example], config: SynthConfig) -> list[Example]:
    """The questions that get context variants: a fact's first ``context_questions`` QA questions (canonical
    first), a document's recall cloze per sentence. None when QA is not a trained format."""
    qa = [e for e in examples if e.format == "qa" and e.prompt is not None and e.context is None]
    if isinstance(item, Document):
        return [e for e in qa if e.probe]
    return qa[: config.context_questions]


def context_variants(item: Item, examples: Sequence[Example], pool: DistractorPool) -> list[Example]:
    """The context-mixed copies of ``item``'s questions: ``gold_share`` of the eligible ones with a gold context,
    ``distractor_share`` with distractors only (different questions first, so both layouts see both wordings)."""
    cfg = pool.config
    questions = eligible(item, examples, cfg)
    rng = random.Random(f"{cfg.seed}:context:{item.id}")
    order = list(range(len(questions)))
    rng.shuffle(order)
    n_gold, n_dist = _round(cfg.gold_share * len(order)), _round(cfg.distractor_share * len(order))
    out: list[Example] = []
    for gold, picks in ((True, order[:n_gold]), (False, order[::-1][:n_dist])):
        for i in sorted(picks):
            q = questions[i]
            ctx = build_context(item, q, pool, gold, rng)
            out.append(Example(q.item_id, "qa", q.prompt, q.completion, probe=False, context=ctx))
    return out


def context_probes(items: Sequence[Item], examples: Sequence[Example], pool_items: Sequence[Item],
                   config: SynthConfig) -> list[Example]:
    """Each bare recall probe of ``items`` with a gold-plus-distractors context (a fresh draw, not a trained
    one): measures recall with context, reported beside the bare recall that decides when training stops."""
    pool = DistractorPool([*pool_items, *items], config)
    by_id = {it.id: it for it in items}
    out: list[Example] = []
    for e in examples:
        item = by_id.get(e.item_id)
        if item is None or not e.probe or e.prompt is None or e.context is not None:
            continue
        rng = random.Random(f"{config.seed}:probe:{item.id}:{e.prompt}")
        out.append(Example(e.item_id, "probe", e.prompt, e.completion, probe=True,
                           context=build_context(item, e, pool, True, rng)))
    return out
