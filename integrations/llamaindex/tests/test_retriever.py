"""LoRAMemoryRetriever on the tiny model: recalled nodes, scores and provenance."""

from __future__ import annotations

import pytest
from li_data import FACTS, QUESTION, SPLIT, SPLIT_NS
from llama_index.core.schema import MetadataMode, QueryBundle

from llama_index.retrievers.loramem import LoRAMemoryRetriever

BOB_A, ALMA_A = FACTS["a"]
PARAPHRASE = "Which colour does Bob like best?"  # mentions Bob's fact without being its stored question


@pytest.fixture
def retriever(store: str, tiny_model: str) -> LoRAMemoryRetriever:
    return LoRAMemoryRetriever(store, tiny_model, namespace="a", similarity_top_k=2)


def test_nodes_are_recalled_with_provenance(retriever: LoRAMemoryRetriever) -> None:
    first, second = retriever.retrieve(PARAPHRASE)
    # The first node answers the query itself (generated with module a active).
    assert first.score == 1.0
    assert first.node.get_content().startswith(f"Q: {PARAPHRASE}\nA:")
    meta = first.node.metadata
    assert meta["namespace"] == "a" and meta["module_id"] and meta["module_version"] == 1
    assert meta["reader"] == "lora" and meta["question"] == PARAPHRASE and meta["kind"] == "query"
    assert meta["item_ids"] == [BOB_A.id]  # the query mentions Bob's fact only
    assert meta["items"] == ["Bob | favourite colour"]  # labels never give the stored answer away
    # The second node is the recall of the item the query mentions most, asked its stored question.
    assert second.node.metadata["item_ids"] == [BOB_A.id] and second.node.metadata["kind"] == "item"
    assert second.node.get_content() == f"Q: {QUESTION}\nA: blue"
    assert 0 < (second.score or 0) < 1  # the embedding similarity of the query and the item


def test_query_that_is_a_stored_question_is_not_asked_twice(retriever: LoRAMemoryRetriever) -> None:
    first, second = retriever.retrieve(QUESTION)
    assert first.node.get_content() == f"Q: {QUESTION}\nA: blue"
    assert second.node.metadata["item_ids"] == [ALMA_A.id] and 0 <= (second.score or 0) < 1
    assert second.node.get_content().endswith("A: 555-201-7733")


def test_metadata_is_hidden_from_the_llm(retriever: LoRAMemoryRetriever) -> None:
    node = retriever.retrieve(QUESTION)[0].node
    assert node.get_content(metadata_mode=MetadataMode.LLM) == node.get_content()


def test_k_bounds_and_other_namespace(store: str, tiny_model: str) -> None:
    one = LoRAMemoryRetriever(store, tiny_model, namespace="b", similarity_top_k=1).retrieve(QUESTION)
    assert len(one) == 1 and one[0].node.get_content().endswith("A: green")
    # k larger than what the namespace holds: the answer, one node per stored item, then generic prompts.
    many = LoRAMemoryRetriever(store, tiny_model, namespace="b", similarity_top_k=10).retrieve(PARAPHRASE)
    assert len(many) == 10
    kinds = [n.node.metadata["kind"] for n in many]
    assert kinds == ["query"] + ["item"] * len(FACTS["b"]) + ["recall"] * (9 - len(FACTS["b"]))
    items = many[1 : 1 + len(FACTS["b"])]
    assert sorted(n.node.metadata["item_ids"][0] for n in items) == sorted(f.id for f in FACTS["b"])
    assert all(n.score == 0.0 for n in many[1 + len(FACTS["b"]) :])
    recalled = {n.node.metadata["item_ids"][0]: n.node.get_content() for n in items}
    assert recalled[FACTS["b"][0].id].endswith("A: green")
    assert recalled[FACTS["b"][1].id].endswith("A: 555-909-1234")


def test_empty_namespace_returns_nothing(store: str, tiny_model: str) -> None:
    assert LoRAMemoryRetriever(store, tiny_model, namespace="empty").retrieve(QUESTION) == []


def test_split_namespace_names_the_module_that_answered(store: str, tiny_model: str) -> None:
    retriever = LoRAMemoryRetriever(store, tiny_model, namespace=SPLIT_NS, similarity_top_k=5)
    nodes = retriever.retrieve("What is the home town of Eira?")
    assert nodes[0].node.metadata["module_id"] == "s.towns"
    by_question = {n.node.metadata["question"]: n for n in nodes}
    for module, facts in SPLIT.items():
        for fact in facts:
            node = by_question[fact.canonical_question]
            assert node.node.metadata["module_id"] == module and node.node.metadata["modules"] == [module]
            assert node.node.get_content().endswith(f"A: {fact.object}")


def test_bad_arguments(store: str) -> None:
    with pytest.raises(ValueError, match="similarity_top_k"):
        LoRAMemoryRetriever(store, similarity_top_k=0)
    with pytest.raises(ValueError, match="namespace"):
        LoRAMemoryRetriever(store, namespace="bad name")


async def test_aretrieve(retriever: LoRAMemoryRetriever) -> None:
    nodes = await retriever.aretrieve(QueryBundle(QUESTION))
    assert nodes[0].node.get_content().endswith("A: blue")
