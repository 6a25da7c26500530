"""Synthesis: turn knowledge items into training examples in the chosen formats.

Formats (the paper's finding: QA internalises best, mixtures of formats do better still):
  qa        questions with the fact as answer (several paraphrases per fact; for documents, cloze questions and
            wh-questions in a user's words, "What is Maya allergic to?" and the reverse, ``synth.questions``)
  rewrite   the same knowledge restated in other words
  original  the item's own text
  summary   a summary (LLM synthesizer only)

Documents also get one held-out wh-phrasing per sentence (format ``heldout``, never trained: ``Example.trained``)
to report recall in words the module never saw; see ``synth.rules``.

Synthesizers are a registry: ``template`` (facts), ``rules`` (documents), ``llm`` (any callable or LangChain
chat model; off by default). ``synthesize`` picks per item type and mixes the formats, then (``context_mix``)
adds context-mixed copies of the questions, with distractors from the namespace (``synth.context``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..config import SynthConfig
from ..types import Document, Example, Fact, Item
from .context import DistractorPool, context_probes, context_variants
from .llm import LLMSynthesizer
from .questions import Question, wh_questions
from .rules import RuleSynthesizer
from .templates import HELDOUT_QA_TEMPLATE, QA_TEMPLATES, TemplateSynthesizer


class Synthesizer(Protocol):
    name: str

    def examples(self, item: Item, config: SynthConfig) -> list[Example]: ...


SYNTHESIZERS: dict[str, Callable[..., Synthesizer]] = {
    "template": TemplateSynthesizer,
    "rules": RuleSynthesizer,
    "llm": LLMSynthesizer,
}


def register_synthesizer(name: str, factory: Callable[..., Synthesizer]) -> None:
    if name in SYNTHESIZERS:
        raise ValueError(f"synthesizer {name!r} is already registered")
    SYNTHESIZERS[name] = factory


def get_synthesizer(name: str, **kwargs: Any) -> Synthesizer:
    try:
        factory = SYNTHESIZERS[name]
    except KeyError:
        raise ValueError(f"unknown synthesizer {name!r}; valid: {sorted(SYNTHESIZERS)}") from None
    return factory(**kwargs)


def synthesize(
    items: Sequence[Item], config: SynthConfig, llm: Any | None = None, namespace_items: Sequence[Item] = ()
) -> list[Example]:
    """Examples for every item: facts through templates, documents through rules (or the LLM when given).

    With ``config.context_mix``, each item's questions also get copies with a context (gold among distractors,
    distractors only); distractors are drawn from ``namespace_items`` (what the namespace already holds) and
    the other ``items``, so a write teaches the module to tell its items apart in a retrieved context."""
    facts = TemplateSynthesizer()
    docs: Synthesizer = LLMSynthesizer(llm) if llm is not None else RuleSynthesizer()
    if "summary" in config.formats and llm is None:
        raise ValueError("format 'summary' needs an LLM synthesizer: pass llm=<callable or chat model>")
    pool = DistractorPool([*namespace_items, *items], config) if config.context_mix else None
    out: list[Example] = []
    for item in items:
        if isinstance(item, Fact):
            mine = facts.examples(item, config)
        elif isinstance(item, Document):
            mine = docs.examples(item, config)
        else:
            raise TypeError(f"expected Fact or Document, got {type(item).__name__}")
        out.extend(mine)
        if pool is not None:
            out.extend(context_variants(item, mine, pool))
    return out


__all__ = [
    "DistractorPool",
    "HELDOUT_QA_TEMPLATE",
    "LLMSynthesizer",
    "QA_TEMPLATES",
    "Question",
    "RuleSynthesizer",
    "SYNTHESIZERS",
    "Synthesizer",
    "TemplateSynthesizer",
    "context_probes",
    "context_variants",
    "get_synthesizer",
    "register_synthesizer",
    "synthesize",
    "wh_questions",
]
