"""Stacking on the embedded SmolLM2-135M (slow: minutes on 2 CPU cores): a module written with the default
(context-mixed) recipe, read with a context as RAG would give it, must not fall below the module alone.

Issue 10's figures before context-mixed training (16 entries): module 1.00; module + gold among distractors
0.38; module + distractors only 0.31; bare model + gold 0.44."""

from __future__ import annotations

import random

import pytest

from loramem import KnowledgeMemory
from loramem.phonebook import phone_correct, phonebook
from loramem.text import render_context

pytestmark = pytest.mark.slow


def test_a_context_mixed_module_stacks_with_a_context(tmp_path):
    book = phonebook(16, seed=11)
    rng = random.Random(5)
    gold, distractors = [], []
    for fact in book:
        others = [f for f in book if f is not fact]
        with_gold = [fact, *rng.sample(others, 2)]
        rng.shuffle(with_gold)
        gold.append(render_context(with_gold))  # what the RAG/ICL readers put before the question
        distractors.append(render_context(rng.sample(others, 3)))
    questions = [f.canonical_question for f in book]
    with KnowledgeMemory.open(tmp_path / "mem", model="smollm2-135m") as mem:
        report = mem.write(book, namespace="pb")

        def score(namespace: str | None, context: list[str] | None) -> float:
            answers = mem.ask(questions, namespace=namespace, context=context)
            return sum(phone_correct(a.text, f.object) for a, f in zip(answers, book)) / len(book)

        alone = score("pb", None)
        with_gold = score("pb", gold)
        with_distractors = score("pb", distractors)
        base_gold = score(None, gold)
    print(f"\n[stacking, 16 entries] {report.summary()}\n"
          f"  recall_with_context (write report): {report.details.get('recall_with_context')}\n"
          f"  module alone {alone:.2f} | module + gold&distractors {with_gold:.2f} | "
          f"module + distractors only {with_distractors:.2f} | base + gold&distractors {base_gold:.2f}\n"
          f"  examples {report.examples}, tokens trained {report.tokens_trained}, write {report.seconds:.0f}s")
    assert with_gold >= alone
    assert with_distractors >= alone - 0.1
    assert with_gold >= base_gold
