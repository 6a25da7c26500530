"""The ``natural_questions`` experiment: one-sentence memories asked the way people ask (issue 11, part 3).

The shipped set (``loramem.memories``: invented memories, each with 2 questions in words no synthesizer template
writes, and the answer a reply must contain) is written one Document per memory into one namespace with the
rule synthesizer and the experiment's ``synth``, as one module (``split=False``: the figure is the synthesizer's,
not the router's). Then, each with ``mem.ask`` and scored "the reply contains the answer" (case-insensitive):

- ``lora: set questions``: the set's 2 questions per memory (the target, ``options.target``, is a share of these);
- ``lora: held-out phrasings``: the synthesizer's held-out phrasing per sentence (format ``heldout``: asked in its
  own template words, never trained on);
- ``lora: trained phrasings`` (``options.trained_phrasings``): the wh-questions it trained on, to tell a module that
  did not memorise from one that did not carry its memories to other words;
- ``base: set questions`` (``options.base``): the bare model on the set's questions.

``results.json``: one point with the write (steps, tokens, seconds, recall, the examples by kind) and one row per
section (n, ``contains``, per memory kind, latency); ``samples.jsonl``: one row per question asked.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ..config import NaturalQuestionsOptions
from ..provenance import Timer

if TYPE_CHECKING:
    from ..runner import Runner

NAMESPACE = "memories"
SET, HELDOUT, TRAINED, BASE = ("lora: set questions", "lora: held-out phrasings", "lora: trained phrasings",
                               "base: set questions")


def contains(reply: str, answer: str) -> float:
    return float(answer.lower() in reply.lower())


def run(runner: Runner, results: dict[str, Any]) -> None:
    from loramem.memories import load_memories
    from loramem.synth.questions import document_questions
    from loramem.synth.rules import sentences

    exp, mem = runner.experiment, runner.mem
    assert mem is not None and isinstance(exp.options, NaturalQuestionsOptions)
    opts = exp.options
    memories = load_memories()[: opts.memories or None]
    docs = [m.document for m in memories]
    point: dict[str, Any] = {
        "index": 0, "label": f"{len(memories)} memories, {2 * len(memories)} questions", "overrides": {},
        "task": {"name": "memories", "primary": "contains", "size": len(memories), "questions": 2 * len(memories)},
        "target": opts.target, "write": None, "readers": {}, "summary": {},
    }
    results["points"].append(point)

    with Timer() as t:
        rep = mem.write(docs, namespace=NAMESPACE, split=False, lora=exp.lora, train=exp.train, synth=exp.synth)
    examples = mem.store.examples(NAMESPACE, [d.id for d in docs])  # what the write synthesized, as stored
    wh = {q.text for d in docs for qs in document_questions(sentences(d.text)) for q in qs}
    trained_wh = [e for e in examples if e.format == "qa" and e.context is None and e.prompt in wh]
    heldout = [e for e in examples if e.format == "heldout"]
    point["write"] = {
        "seconds": round(t.seconds, 2), "steps": rep.steps, "tokens_trained": rep.tokens_trained,
        "knowledge_tokens": rep.knowledge_tokens, "recall": rep.recall, "reached_target": rep.reached_target,
        "trainable_params": rep.trainable_params, "items": rep.items_total, "modules": len(mem.ls(NAMESPACE)),
        "examples_trained": rep.examples, "examples": {
            "wh_trained": len(trained_wh), "heldout": len(heldout),
            "context": sum(e.context is not None for e in examples),
            "other_trained": sum(e.trained and e.context is None for e in examples) - len(trained_wh)},
    }
    runner.say(f"  {exp.name}: write: {rep.summary()}")
    runner.save(results)

    by_doc = {m.document.id: m for m in memories}
    set_rows = [(m, f"{m.id}.q{j}", q, m.answer) for m in memories for j, q in enumerate(m.questions)]
    sections: list[tuple[str, list[tuple[Any, str, str, str]], str | None]] = [
        (SET, set_rows, NAMESPACE),
        (HELDOUT, [(by_doc[e.item_id], f"{by_doc[e.item_id].id}.h{i}", e.prompt or "", e.completion)
                   for i, e in enumerate(heldout)], NAMESPACE),
    ]
    if opts.trained_phrasings:
        sections.append((TRAINED, [(by_doc[e.item_id], f"{by_doc[e.item_id].id}.t{i}", e.prompt or "", e.completion)
                                   for i, e in enumerate(trained_wh)], NAMESPACE))
    if opts.base:
        sections.append((BASE, set_rows, None))
    for name, rows, namespace in sections:
        if not rows:
            continue
        with Timer() as t:
            answers = mem.ask([q for _, _, q, _ in rows], namespace=namespace)
        point["readers"][name] = record(runner, name, rows, answers, t.seconds, t.peak_mb)
        runner.say(f"  {exp.name}: {name}: contains {point['readers'][name]['metrics']['contains']:.3f} "
                   f"(n={len(rows)})")
        runner.save(results)
    share = point["readers"][SET]["metrics"]["contains"]
    point["summary"] = {**{name: row["metrics"]["contains"] for name, row in point["readers"].items()},
                        "target": opts.target, "target_met": share >= opts.target}
    runner.say(f"  {exp.name}: set questions {share:.1%} (target {opts.target:.0%}: "
               f"{'met' if share >= opts.target else 'NOT met'})")
    runner.save(results)


def record(runner: Runner, name: str, rows: list[tuple[Any, str, str, str]], answers: list[Any], seconds: float,
           peak_mb: float) -> dict[str, Any]:
    """Score one section, append its answers to samples.jsonl and return its summary row (overall and per kind)."""
    scores = [contains(a.text, gold) for (_, _, _, gold), a in zip(rows, answers)]
    runner.output.append(
        {"point": 0, "reader": name, "question_id": qid, "kind": m.kind, "memory": m.id, "memory_text": m.text,
         "question": q, "gold": [gold], "answer": a.text, "metrics": {"contains": s}, "modules": a.modules}
        for (m, qid, q, gold), a, s in zip(rows, answers, scores))
    kinds: dict[str, list[float]] = defaultdict(list)
    for (m, _, _, _), s in zip(rows, scores):
        kinds[m.kind].append(s)
    return {"n": len(rows), "metrics": {"contains": round(sum(scores) / len(scores), 4)},
            "latency_s": round(seconds / len(rows), 4), "peak_rss_mb": round(peak_mb, 1),
            "by_kind": {k: {"n": len(v), "metrics": {"contains": round(sum(v) / len(v), 4)}}
                        for k, v in sorted(kinds.items())}}
