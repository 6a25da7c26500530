"""The counterfact benchmark task: the shipped data, build, score, and the base-model check (on the tiny model)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from benchmarks.tasks import get_task
from benchmarks.tasks.counterfact import (
    CANDIDATES,
    CRITERIA,
    CRITERION,
    KEPT,
    CounterFactTask,
    check_known,
    knows,
    load_records,
    mentions,
    normalise,
    validate_record,
)
from loramem import Answer, Fact, KnowledgeMemory

RECORD: dict[str, Any] = {
    "id": "cf9001", "subject": "Eiffel Tower", "relation": "city of landmark",
    "question": "In which city is the Eiffel Tower?", "true": "Paris", "new": "Rome",
    "paraphrases": ["The Eiffel Tower is located in which city?", "Which city is home to the Eiffel Tower?"],
    "neighbours": [{"question": "In which city is the Louvre?", "answer": "Paris"},
                   {"question": "In which city is the Arc de Triomphe?", "answer": "Paris"}],
}
RECORD2: dict[str, Any] = {
    "id": "cf9002", "subject": "Japan", "relation": "currency", "question": "What is the currency of Japan?",
    "true": "yen", "new": "euro",
    "paraphrases": ["Which currency is used in Japan?", "What money do people use in Japan?"],
    "neighbours": [{"question": "What is the currency of the United States?", "answer": "dollar"},
                   {"question": "What is the currency of India?", "answer": "rupee"}],
}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# --- the shipped data ----------------------------------------------------------------------------------------------


def test_shipped_kept_file_is_well_formed() -> None:
    records = load_records(KEPT)  # validates fields, two paraphrases/neighbours, new != true, unique ids
    assert len(records) >= 200
    assert len({r["id"] for r in records}) == len(records)
    assert len({r["question"] for r in records}) == len(records)
    edited = {r["question"] for r in records}
    for r in records:
        assert normalise(r["new"]) != normalise(r["true"])
        assert len(r["paraphrases"]) == 2 and len(set(r["paraphrases"])) == 2
        assert len(r["neighbours"]) == 2
        for n in r["neighbours"]:
            assert n["question"] not in edited, f"{r['id']}: a neighbour question is another record's edit"
            assert normalise(n["answer"]) != normalise(r["new"])
        check = r["base_check"]
        assert check["id"] == r["id"]
        assert check["distinct_first_token"] is True
        assert knows(check, CRITERION), f"{r['id']} is kept but fails the criterion"


def test_kept_records_are_candidates_plus_their_check() -> None:
    candidates = {r["id"]: r for r in load_records(CANDIDATES)}
    assert len(candidates) >= 450
    for r in load_records(KEPT):
        assert {k: v for k, v in r.items() if k != "base_check"} == candidates[r["id"]]


def test_shipped_data_covers_many_relations() -> None:
    relations = Counter(r["relation"] for r in load_records(KEPT))
    assert len(relations) >= 8
    assert max(relations.values()) < 0.5 * sum(relations.values())


# --- build --------------------------------------------------------------------------------------------------------


def test_registered() -> None:
    task = get_task("counterfact")
    assert isinstance(task, CounterFactTask)
    assert task.primary == "correct"


def test_build_sizes_and_seeds() -> None:
    task = CounterFactTask()
    n = len(load_records(KEPT))
    data = task.build(10, seed=0)
    assert len(data.items) == 10 and len(data.questions) == 50
    assert data.meta == {"facts": 10, "seed": 0, "source": "benchmarks/data/counterfact.jsonl",
                         "preserve": "held-out", "preserve_prompts": len(data.preserve)}
    assert data.groups == {"all": [it.id for it in data.items]}
    again = task.build(10, seed=0)
    assert [q.id for q in again.questions] == [q.id for q in data.questions]
    other = task.build(10, seed=1)
    assert {it.id for it in other.items} != {it.id for it in data.items}
    assert len(task.build(0).items) == n
    assert len(task.build(n + 5).items) == n


def test_build_questions_and_candidates() -> None:
    data = CounterFactTask().build(5, seed=3)
    kinds = Counter(q.kind for q in data.questions)
    assert kinds == {"efficacy": 5, "paraphrase": 10, "neighbourhood": 10}
    records = {r["id"]: r for r in load_records(KEPT)}
    facts = {it.id: it for it in data.items}
    for q in data.questions:
        r = records[q.meta["cf_id"]]
        (fid,) = q.item_ids
        fact = facts[fid]
        assert isinstance(fact, Fact)
        assert (fact.subject, fact.relation, fact.object, fact.question) == (r["subject"], r["relation"], r["new"], r["question"])
        assert fact.metadata == {"cf_id": r["id"], "true": r["true"]}
        assert q.group == "all"
        if q.kind == "efficacy":
            assert q.text == r["question"]
        if q.kind in ("efficacy", "paraphrase"):
            assert q.answers == [r["new"]] and q.candidates == [r["new"], r["true"]]
        else:
            n = next(n for n in r["neighbours"] if n["question"] == q.text)
            assert q.answers == [n["answer"]] and q.candidates == [n["answer"], r["new"]]
    assert {q.text for q in data.questions if q.kind == "paraphrase"} == {
        p for it in data.items for p in records[it.metadata["cf_id"]]["paraphrases"]}


def test_build_from_a_given_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "cf.jsonl", [RECORD, RECORD2])
    data = CounterFactTask().build(0, path=path)
    assert [it.object for it in data.items if isinstance(it, Fact)] == ["Rome", "euro"]
    assert data.meta["source"] == str(path)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"size": -1}, "expected size >= 0 facts (0 = all), got -1"),
    ({"size": 3, "facts": 2}, "unknown options ['facts']"),
])
def test_build_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        CounterFactTask().build(**kwargs)


@pytest.mark.parametrize(("change", "message"), [
    ({"new": "paris"}, "cf9001: 'new' must differ from 'true'"),
    ({"paraphrases": ["only one"]}, "cf9001: 'paraphrases' must be a list of 2"),
    ({"neighbours": [{"question": "q?", "answer": "Rome"}, {"question": "r?", "answer": "Paris"}]},
     "neighbours\\[0\\] answer equals the new target"),
    ({"question": ""}, "'question' must be a non-empty string"),
    ({"question": "Where is {subject}?"}, "must not contain braces"),
])
def test_validate_record_names_the_problem(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_record({**RECORD, **change})


def test_load_records_rejects_duplicate_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "dup.jsonl", [RECORD, RECORD])
    with pytest.raises(ValueError, match="duplicate id 'cf9001'"):
        load_records(path)


# --- score --------------------------------------------------------------------------------------------------------


def test_mentions() -> None:
    assert mentions("The capital of Brazil is Brasilia.", "Brasília")
    assert mentions("Whales are mammals.", "mammal")
    assert mentions("It was written by J.R.R. Tolkien!", "J.R.R. Tolkien")
    assert not mentions("That was a wonderful day.", "won")
    assert not mentions("Paris", "")
    assert normalise("The Great  Gatsby, by F. Scott") == "great gatsby by f scott"


def test_score() -> None:
    task = CounterFactTask()
    data = task.build(1, seed=0)
    eff = next(q for q in data.questions if q.kind == "efficacy")
    new, true = eff.meta["new"], eff.meta["true"]

    def ans(text: str) -> Answer:
        return Answer(question=eff.text, text=text)

    assert task.score(eff, ans(f"It is {new}.")) == {"correct": 1.0, "old_mentioned": 0.0}
    assert task.score(eff, ans(f"Most say {true}, not {new}.")) == {"correct": 1.0, "old_mentioned": 1.0}
    assert task.score(eff, ans(f"The answer is {true}.")) == {"correct": 0.0, "old_mentioned": 1.0}
    assert task.score(eff, ans("I do not know.")) == {"correct": 0.0, "old_mentioned": 0.0}
    para = next(q for q in data.questions if q.kind == "paraphrase")
    assert task.score(para, ans(new.upper()))["correct"] == 1.0
    neigh = next(q for q in data.questions if q.kind == "neighbourhood")
    assert task.score(neigh, ans(f"That is {neigh.answers[0]}.")) == {"correct": 1.0, "new_mentioned": 0.0}
    assert task.score(neigh, ans(f"That is {new}.")) == {"correct": 0.0, "new_mentioned": 1.0}


# --- the base-model check -------------------------------------------------------------------------------------------


def test_check_known_on_the_tiny_model(mem: KnowledgeMemory) -> None:
    checks = check_known(mem, [RECORD, RECORD2], batch_size=3)
    assert [c["id"] for c in checks] == ["cf9001", "cf9002"]
    for c in checks:
        assert set(c) == {"id", "distinct_first_token", "p_true", "p_new", "main", "paraphrases", "greedy",
                          "greedy_true", "greedy_new", "neighbours", "neighbours_greedy"}
        assert isinstance(c["distinct_first_token"], bool) and isinstance(c["main"], bool)
        assert isinstance(c["p_true"], float) and isinstance(c["p_new"], float)
        assert c["p_true"] <= 0.0 and c["p_new"] <= 0.0
        assert c["main"] == (c["p_true"] > c["p_new"])
        assert isinstance(c["greedy"], str)
        assert isinstance(c["greedy_true"], bool) and isinstance(c["greedy_new"], bool)
        for key in ("paraphrases", "neighbours", "neighbours_greedy"):
            assert len(c[key]) == 2 and all(isinstance(v, bool) for v in c[key])
        for criterion in CRITERIA:
            assert isinstance(knows(c, criterion), bool)
    with pytest.raises(ValueError, match="criterion: expected one of"):
        knows(checks[0], "vibes")
    with pytest.raises(ValueError, match="batch_size: expected >= 1, got 0"):
        check_known(mem, [RECORD], batch_size=0)


def test_preservation_prompts_are_held_out_unless_asked_for() -> None:
    """Held-out: same relations as the edits, none of them a question the run asks or about an edited subject;
    neighbours: exactly the neighbourhood questions locality is scored on; none: nothing."""
    task = CounterFactTask()
    data = task.build(20, seed=1)
    asked = {q.text for q in data.questions}
    edited = {it.subject for it in data.items}
    relations = {it.relation for it in data.items}
    assert len(data.preserve) >= len(data.items) and not asked & set(data.preserve)
    by_question = {r["question"]: r for r in load_records(CANDIDATES)}
    known = [by_question[p] for p in data.preserve if p in by_question]
    assert known and all(r["relation"] in relations and r["subject"] not in edited for r in known)
    neighbours = task.build(20, seed=1, preserve="neighbours")
    assert set(neighbours.preserve) == {q.text for q in neighbours.questions if q.kind == "neighbourhood"}
    assert task.build(20, seed=1, preserve="none").preserve == []
    with pytest.raises(ValueError, match="preserve: expected one of"):
        task.build(5, preserve="all")
