"""The longdoc task: generated company histories and their three levels of questions (no model needed)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from benchmarks.metrics import TEXT_METRICS
from benchmarks.tasks import get_task
from benchmarks.tasks.base import Question, TaskData
from benchmarks.tasks.longdoc import LEVELS, MAX_PER_LEVEL, LongDocTask
from loramem.phonebook import FIRST, LAST
from loramem.types import Answer, Document

SIZE = 5


@pytest.fixture(scope="module")
def data() -> TaskData:
    return LongDocTask().build(SIZE, seed=0)


def docs_by_key(data: TaskData) -> dict[str, Document]:
    out = {}
    for it in data.items:
        assert isinstance(it, Document)
        out[it.metadata["doc"]] = it
    return out


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def stated_together(doc: Document, terms: list[str]) -> bool:
    """One sentence of the document names every term (as whole words: the river Malel is not in Malela)."""
    patterns = [re.compile(rf"(?<!\w){re.escape(t)}(?!\w)") for t in terms]
    return any(all(p.search(s) for p in patterns) for s in sentences(doc.text))


def test_registered() -> None:
    task = get_task("longdoc")
    assert isinstance(task, LongDocTask)
    assert task.primary == "rougeL"


def test_deterministic_for_a_seed(data: TaskData) -> None:
    again = LongDocTask().build(SIZE, seed=0)
    assert [d.id for d in again.items] == [d.id for d in data.items]
    assert [q.to_dict() for q in again.questions] == [q.to_dict() for q in data.questions]
    other = LongDocTask().build(SIZE, seed=1)
    assert {d.id for d in other.items}.isdisjoint(d.id for d in data.items)


def test_documents_are_long_articles(data: TaskData) -> None:
    # SmolLM2 averages ~1.72 tokens a word on these articles: 1,500 tokens is ~870 words.
    for doc in docs_by_key(data).values():
        words = len(doc.text.split())
        assert 750 <= words <= 1050, (doc.title, words)
        assert doc.title and doc.text.startswith(doc.title)
        assert doc.metadata["subject"] == doc.title
    assert data.meta["documents"] == SIZE and data.meta["seed"] == 0
    assert data.meta["words_per_doc"] == [len(d.text.split()) for d in data.items]  # type: ignore[union-attr]


def test_doc_tokens_scales_the_articles() -> None:
    short = LongDocTask().build(2, seed=0, doc_tokens=1000)
    long = LongDocTask().build(2, seed=0, doc_tokens=2000)
    for s, lg in zip(short.meta["words_per_doc"], long.meta["words_per_doc"]):
        assert 480 <= s <= 700 and 1000 <= lg <= 1350, (s, lg)


def test_tokenizer_only_measures() -> None:
    class WordTokenizer:
        def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, Any]:
            return {"input_ids": text.split()}

    measured = LongDocTask().build(2, seed=0, tokenizer=WordTokenizer())
    plain = LongDocTask().build(2, seed=0)
    assert [d.id for d in measured.items] == [d.id for d in plain.items]
    assert measured.meta["tokens_per_doc"] == plain.meta["words_per_doc"]
    assert "tokens_per_doc" not in plain.meta


def test_groups_one_per_document(data: TaskData) -> None:
    docs = docs_by_key(data)
    assert sorted(data.groups) == sorted(docs) == [f"doc{i:02d}" for i in range(SIZE)]
    for key, members in data.groups.items():
        assert members == [docs[key].id]


def test_levels_balanced(data: TaskData) -> None:
    assert Counter(q.kind for q in data.questions) == dict.fromkeys(LEVELS, SIZE * 4)
    per_doc = Counter((q.meta["docs"][0], q.kind) for q in data.questions)
    assert set(per_doc.values()) == {4}
    assert len({q.id for q in data.questions}) == len(data.questions)
    two = LongDocTask().build(3, seed=2, questions_per_level=2)
    assert Counter(q.kind for q in two.questions) == dict.fromkeys(LEVELS, 6)


def check_support(q: Question, docs: dict[str, Document], ids: dict[str, str]) -> None:
    support = q.meta["support"]
    answer = q.answers[0]
    assert q.item_ids == [ids[k] for k in q.meta["docs"]]
    assert list(dict.fromkeys(s["doc"] for s in support)) == q.meta["docs"]
    assert support[-1]["doc"] == q.group and answer in support[-1]["terms"]
    assert q.group is not None and answer in docs[q.group].text
    for hop in support:
        assert stated_together(docs[hop["doc"]], hop["terms"]), (q.text, hop)
    for a, b in zip(support, support[1:]):  # each hop's linking entity is named in both sentences
        assert set(a["terms"]) & set(b["terms"]), (q.text, a, b)


def test_answers_are_grounded(data: TaskData) -> None:
    docs = docs_by_key(data)
    ids = {k: d.id for k, d in docs.items()}
    for q in data.questions:
        check_support(q, docs, ids)
        subject = q.meta["subject"]
        assert subject in q.text  # questions name the organisation they start from
        assert docs[q.meta["docs"][0]].title == subject


def test_levels_need_what_they_say(data: TaskData) -> None:
    docs = docs_by_key(data)
    for q in data.questions:
        support = q.meta["support"]
        if q.kind == "recall":
            assert len(support) == 1 and len(q.item_ids) == 1
        elif q.kind == "comprehension":
            assert len(support) == 2 and len(q.item_ids) == 1
            terms = [t for hop in support for t in hop["terms"]]
            assert not stated_together(docs[q.meta["docs"][0]], terms), q.text  # no single sentence answers it
        else:
            assert len(q.item_ids) >= 2 and len(set(q.meta["docs"])) >= 2
            first = docs[q.meta["docs"][0]]
            landing = next(hop for hop in support if hop["doc"] != q.meta["docs"][0])
            assert not stated_together(first, landing["terms"]), q.text  # the hop into the next document is not in the first
            assert q.group != q.meta["docs"][0]


def test_many_seeds_and_the_smallest_world() -> None:
    for seed in range(4):
        data = LongDocTask().build(2, seed=seed, questions_per_level=MAX_PER_LEVEL, doc_tokens=600)
        docs = docs_by_key(data)
        ids = {k: d.id for k, d in docs.items()}
        for q in data.questions:
            check_support(q, docs, ids)


def test_invented_names_are_unique_and_not_the_phonebook() -> None:
    import random

    from benchmarks.tasks.longdoc import make_world

    world = make_world(40, random.Random(0))
    people = [p.name for o in world.orgs for p in o.people]
    assert len(set(people)) == len(people)
    assert len({o.name for o in world.orgs}) == len(world.orgs)
    phonebook = set(FIRST) | set(LAST)
    words = {w for o in world.orgs for p in o.people for w in (p.first, p.last)} | set(world.towns)
    assert not words & phonebook
    assert all(p.birthplace in world.towns for o in world.orgs for p in o.people)
    assert all(o.supplier != o.index and o.shareholder != o.index for o in world.orgs)
    assert sorted(o.supplier for o in world.orgs) == list(range(40))  # every organisation supplies exactly one


def test_score_uses_text_metrics(data: TaskData) -> None:
    task = LongDocTask()
    q = data.questions[0]
    right = task.score(q, Answer(question=q.text, text=f"The answer is {q.answers[0]}."))
    assert set(right) == set(TEXT_METRICS)
    assert right["contains"] == 1.0 and right["rougeL"] > 0
    assert task.score(q, Answer(question=q.text, text=""))["rougeL"] == 0.0


@pytest.mark.parametrize("size", [0, 1, 201])
def test_size_out_of_range(size: int) -> None:
    with pytest.raises(ValueError, match=f"got {size}"):
        LongDocTask().build(size)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="questions_per_level"):
        LongDocTask().build(2, questions_per_level=MAX_PER_LEVEL + 1)
    with pytest.raises(ValueError, match="doc_tokens"):
        LongDocTask().build(2, doc_tokens=0)
