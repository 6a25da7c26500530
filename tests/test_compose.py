"""The confidence rule that composes answers: the gate (closed-book vs context) and its tie rule, on the tiny
model and as a table of scores. Selection between modules is tested with the two-module store in
test_modules.py."""

from __future__ import annotations

import pytest

from loramem import ReadConfig
from loramem.compose import Candidate, choose, competing, plan


def _c(side: str, score: float | None) -> Candidate:
    return Candidate(question=0, infos=[], side=side, text="", score=score)


@pytest.mark.parametrize(("rows", "kept"), [
    ([("closed", -0.5), ("context", -1.0)], 0),    # closed-book surer: kept
    ([("closed", -1.0), ("context", -0.5)], 1),    # context surer: kept
    ([("closed", -0.7), ("context", -0.7)], 1),    # a tie goes to the context answer
    ([("context", -0.7), ("closed", -0.7)], 0),    # whatever the order
    ([("stack", -0.9), ("stack", -0.2)], 1),       # selection: the surer module
    ([("stack", -0.3), ("stack", -0.3)], 0),       # a tie between modules: the router's first
    ([("stack", None)], 0),                        # one row: nothing to compare
])
def test_choose_follows_the_scores_and_the_tie_rule(rows, kept):
    assert choose([_c(side, score) for side, score in rows]) == kept


def test_selection_lets_only_modules_near_the_best_routing_score_compete():
    from pathlib import Path

    from loramem.store import ModuleInfo

    def info(name: str) -> ModuleInfo:
        return ModuleInfo(name, "ns", 1, Path(name), "m", "f", {}, 0, 0, 1.0, 1, 0.0, "0" * 64, {})

    a, b, c = info("a"), info("b"), info("c")
    routed = [(a, 1.0), (b, 0.95), (c, 0.86)]
    assert [i.module_id for i, _ in competing(routed, 0.1)] == ["a", "b"]  # 0.86 is 0.14 below the best
    assert [i.module_id for i, _ in competing(routed, None)] == ["a", "b", "c"]
    assert [i.module_id for i, _ in competing(routed, 0.0)] == ["a"]
    assert competing([(c, 0.4)], 0.0) == [(c, 0.4)]
    rows = plan(["q"], ["p"], None, [routed], "select", 0.1)
    assert [r.infos for r in rows] == [[a], [b]]
    merged = plan(["q"], ["p"], None, [routed], "merge", 0.1)  # merging takes every routed module
    assert [r.infos for r in merged] == [[a, b, c]]
    with pytest.raises(ValueError, match="select_margin"):
        ReadConfig(select_margin=-0.1)


def test_gate_answers_twice_in_one_pass_and_keeps_the_surer(mem, facts):
    mem.write(facts[:3], namespace="ns")
    questions = [f.canonical_question for f in facts[:3]]
    contexts = [f"The favourite colour of {f.subject} is {c}." for f, c in zip(facts[:3], ["grey", "pink", "teal"])]
    calls = []
    original = mem.model.generate

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    mem.model.generate = counting
    answers = mem.ask(questions, "ns", context=contexts, combine="gate")
    assert calls == [2 * len(questions)]  # closed-book and context rows of every question in one batch
    closed = mem.ask(questions, "ns")
    stacked = mem.ask(questions, "ns", context=contexts)
    for a, c, s in zip(answers, closed, stacked):
        g = a.details["gate"]
        assert (g["closed_text"], g["context_text"]) == (c.text, s.text)  # the same rows as asked one by one
        want = "closed" if g["closed"] > g["context"] else "context"
        assert g["chosen"] == want and a.text == g[f"{want}_text"]
        assert a.modules == c.modules


def test_combine_is_validated_and_stack_is_the_default(mem, facts):
    mem.write(facts[:1], namespace="ns")
    q = facts[0].canonical_question
    with pytest.raises(ValueError, match=r"combine: expected one of \('stack', 'gate'\), got 'blend'"):
        mem.ask(q, "ns", context="x", combine="blend")
    with pytest.raises(ValueError, match=r"combine: expected one of \('stack', 'gate'\), got 'blend'"):
        ReadConfig(combine="blend")  # type: ignore[arg-type]
    assert ReadConfig().combine == "stack" and "gate" not in mem.ask(q, "ns", context="x").details
    assert "gate" not in mem.ask(q, "ns", combine="gate").details  # no context: nothing to gate
    mem.read_config = ReadConfig(combine="gate")
    assert "gate" in mem.ask(q, "ns", context="x").details


def test_hybrid_readers_take_the_combine_option_and_say_so(mem, facts):
    from loramem.readers import build_reader

    mem.write(facts[:2], namespace="ns")
    q = [facts[0].canonical_question]
    gated = build_reader("lora+rag", mem, namespace="ns", items=facts, k=2, combine="gate")
    assert gated.name == "lora+rag@gate"
    a = gated.answer(q)[0]
    assert a.reader == "lora+rag@gate" and a.details["gate"]["chosen"] in ("closed", "context") and a.sources
    stacked = build_reader("lora+icl", mem, namespace="ns", items=facts, combine="stack")
    a = stacked.answer(q)[0]
    assert stacked.name == "lora+icl@stack" and "gate" not in a.details and a.details["combine"] == "stack"
    # Unless told, a hybrid gates (the measured winner) under its plain name, and its answers say so.
    default = build_reader("lora+rag", mem, namespace="ns", items=facts, k=2)
    a = default.answer(q)[0]
    assert default.name == "lora+rag" and a.reader == "lora+rag" and a.details["combine"] == "gate"
    assert a.details["gate"]["chosen"] in ("closed", "context")
    assert build_reader("rag", mem, items=facts, k=2).name == "rag"  # no memory: nothing to gate
    with pytest.raises(ValueError, match="combine: expected 'stack' or None for a reader without a context"):
        build_reader("lora", mem, namespace="ns", combine="gate")
    with pytest.raises(ValueError, match=r"combine: expected one of \('stack', 'gate'\), got 'mix'"):
        build_reader("lora+rag", mem, namespace="ns", items=facts, combine="mix")
