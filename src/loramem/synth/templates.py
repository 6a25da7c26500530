"""Template synthesis for facts: several question paraphrases, and declarative sentences."""

from __future__ import annotations

import random

from ..config import SynthConfig
from ..types import Example, Fact, Item

# Paraphrases used for training, after the canonical question. Placeholders: {subject} {relation} {object}.
QA_TEMPLATES: tuple[str, ...] = (
    "What is {subject}'s {relation}?",
    "Tell me the {relation} of {subject}.",
    "Do you know the {relation} of {subject}?",
    "{subject}: what is the {relation}?",
    "I need the {relation} of {subject}. What is it?",
    "Which {relation} does {subject} have?",
)
# Never used in training: benchmarks ask it to measure generalisation beyond the trained wordings.
HELDOUT_QA_TEMPLATE = "Could you give me the {relation} for {subject}?"

ORIGINAL_TEMPLATE = "The {relation} of {subject} is {object}."
REWRITE_TEMPLATES: tuple[str, ...] = ("{subject}'s {relation} is {object}.", "{subject} has {relation} {object}.")


class TemplateSynthesizer:
    name = "template"

    def examples(self, item: Item, config: SynthConfig) -> list[Example]:
        if not isinstance(item, Fact):
            raise TypeError(f"template synthesis takes a Fact, got {type(item).__name__}")
        fact, out = item, []
        rng = random.Random(f"{config.seed}:{fact.id}")
        if "qa" in config.formats:
            answer = fact.canonical_answer
            out.append(Example(fact.id, "qa", fact.canonical_question, answer, probe=True))
            extra = list(QA_TEMPLATES)
            rng.shuffle(extra)
            for template in extra[: config.qa_paraphrases - 1]:
                out.append(Example(fact.id, "qa", fact.fill(template), answer))
        if "original" in config.formats:
            out.append(Example(fact.id, "original", None, fact.fill(ORIGINAL_TEMPLATE)))
        if "rewrite" in config.formats:
            out.append(Example(fact.id, "rewrite", None, fact.fill(rng.choice(REWRITE_TEMPLATES))))
        if "summary" in config.formats:
            # A fact is its own summary: one declarative sentence.
            out.append(Example(fact.id, "summary", None, fact.fill(ORIGINAL_TEMPLATE)))
        if "qa" not in config.formats:
            # Recall is still measured on the canonical question, even when it is not trained on.
            out.append(Example(fact.id, "probe", fact.canonical_question, fact.canonical_answer, probe=True))
        return out
