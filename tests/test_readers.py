"""The readers (base, lora, icl, rag and the hybrids) on one protocol, on the tiny model."""

from __future__ import annotations

import pytest
from conftest import COLOURS

from loramem import Document, Reader, build_reader
from loramem.readers import READERS, ICLContext, RAGIndex, chunk_text, register_reader, render_item


def test_registry_lists_the_axes_and_rejects_unknown_names(mem):
    assert sorted(READERS) == ["base", "icl", "lora", "lora+icl", "lora+rag", "rag"]
    with pytest.raises(KeyError, match="known readers: base, icl"):
        build_reader("nope", mem)
    with pytest.raises(ValueError, match="needs items="):
        build_reader("icl", mem)
    register_reader("custom", lambda memory, **kw: build_reader("base", memory))
    try:
        assert build_reader("custom", mem).name == "base"
    finally:
        READERS.pop("custom")


@pytest.mark.parametrize("name", ["base", "lora", "icl", "rag", "lora+icl", "lora+rag"])
def test_every_reader_answers_and_scores_the_same_way(mem, facts, name):
    mem.write(facts, namespace="people")
    reader = build_reader(name, mem, namespace="people", items=facts, k=2, chunk_size=16)
    assert isinstance(reader, Reader) and reader.name == name
    questions = [f.canonical_question for f in facts[:3]]
    answers = reader.answer(questions)
    assert [a.question for a in answers] == questions and all(a.reader == name for a in answers)
    if name == "lora":
        assert [a.text for a in answers] == COLOURS[:3]
    if name.startswith("lora"):  # (the tiny module was never trained with a context in its prompt)
        assert all(a.modules for a in answers)
    else:
        assert all(not a.modules for a in answers)
    if "rag" in name:
        assert all(len(a.sources) == 2 and a.details["retrieved"] == 2 for a in answers)
    if "icl" in name:
        assert all(a.details["context_items"] == len(facts) and a.details["dropped_items"] == 0 for a in answers)
    scores = reader.score(questions, [[c, "zzz"] for c in COLOURS[:3]], reduce="first")
    assert len(scores) == 3 and all(len(s) == 2 for s in scores)
    if name == "lora":  # the module prefers its own answers
        assert all(s[0] > s[1] for s in scores)


def test_icl_context_drops_what_does_not_fit(mem, facts):
    one = len(mem.tokenizer(render_item(facts[0]) + "\n", add_special_tokens=False)["input_ids"])
    ctx = ICLContext(mem.tokenizer, facts, token_budget=one * 2 + 1)
    assert ctx.details["context_items"] == 2 and ctx.details["dropped_items"] == len(facts) - 2
    assert ctx.details["context_tokens"] <= ctx.token_budget
    with pytest.raises(ValueError, match="token_budget"):
        ICLContext(mem.tokenizer, facts, token_budget=0)


def test_chunking_respects_sentences_and_overlap():
    text = "One two three. Four five six seven. Eight nine ten eleven twelve thirteen fourteen fifteen."
    chunks = chunk_text(text, chunk_size=6, overlap=1)
    assert chunks[0] == "One two three." and all(len(c.split()) <= 7 for c in chunks)
    assert chunks[1].startswith("three.")  # one word of overlap
    with pytest.raises(ValueError, match="overlap"):
        chunk_text(text, chunk_size=4, overlap=4)


def test_rag_index_persists_beside_the_store(mem, tmp_path):
    docs = [Document("The Veltrane works stand in Orlow. They make copper wire.", title="Veltrane"),
            Document("Mira Kast founded the Harrow choir in 1921.", title="Harrow choir")]
    path = RAGIndex.default_path(mem, "docs")
    built = RAGIndex.build(docs, path=path, chunk_size=8, overlap=2)
    assert path.is_relative_to(mem.store.root) and (path / "index.faiss").exists()
    reopened = RAGIndex.open(path)
    assert len(reopened) == len(built)
    hits = reopened.search(["Who founded the Harrow choir?"], k=1)[0]
    assert hits[0][1]["source"] == docs[1].id and 0 < hits[0][0] <= 1.0001
    reader = build_reader("rag", mem, rag_index=reopened, k=1)
    assert reader.answer(["Who founded the Harrow choir?"])[0].sources == [docs[1].id]


def test_batched_logprobs_equal_one_at_a_time_full_forwards(mem, facts):
    import torch

    mem.write(facts[:3], namespace="people")
    questions = [f.canonical_question for f in facts[:3]]
    contexts = ["some context first", None, "x"]
    candidates = [["blue", "red green"], ["red", "blue"], ["a much longer answer than the others", "green"]]
    got = mem.logprobs(questions, candidates, "people", context=contexts)
    tok = mem.tokenizer
    with mem._activate([mem.load_module(mem.ls("people")[0])]):
        for q, c, cands, row in zip(questions, contexts, candidates, got):
            for a, value in zip(cands, row):
                p = tok(mem.prompt_format.prompt(q, c), add_special_tokens=False)["input_ids"]
                ids = tok(a, add_special_tokens=False)["input_ids"]
                lp = mem.model(input_ids=torch.tensor([p + ids])).logits[0].log_softmax(-1)
                assert value == pytest.approx(sum(float(lp[len(p) - 1 + j, t]) for j, t in enumerate(ids)), abs=1e-3)
