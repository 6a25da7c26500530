"""On the embedded SmolLM2-135M model (slow: minutes on 2 CPU cores): one-sentence memories, written with the rule
synthesizer's wh-questions, are answered when asked in a person's own words. Run with `make test-slow`."""

from __future__ import annotations

import pytest

from loramem import KnowledgeMemory, SynthConfig, TrainConfig
from loramem.memories import load_memories

pytestmark = pytest.mark.slow


def test_embedded_model_answers_memories_asked_in_a_persons_words(tmp_path):
    memories = load_memories()[:20]  # as benchmarks/configs/natural-questions-20.json measures them
    # Bare questions (no context mix): nothing here is asked with a context, and the mix costs 3-4x the write.
    mem = KnowledgeMemory.open(tmp_path / "mem", synth=SynthConfig(context_mix=False),
                               train=TrainConfig(max_steps=60, min_epochs=8, batch_tokens=1024, progress=False))
    try:
        report = mem.write([m.document for m in memories], namespace="memories", split=False)
        rows = [(m, q) for m in memories for q in m.questions]
        answers = mem.ask([q for _, q in rows], namespace="memories")
        share = sum(m.correct(a.text) for (m, _), a in zip(rows, answers)) / len(rows)
        base = mem.ask([q for _, q in rows], namespace=None)
        base_share = sum(m.correct(a.text) for (m, _), a in zip(rows, base)) / len(rows)
        misses = [f"{q} -> {a.text!r} (want {m.answer})" for (m, q), a in zip(rows, answers) if not m.correct(a.text)]
        print(f"\n{len(memories)} memories asked in a person's words: {share:.0%} answered ({base_share:.0%} base); "
              f"{report.summary()}\n  misses: " + "\n  ".join(misses[:12]))
    finally:
        mem.close()
    assert share >= 0.60
