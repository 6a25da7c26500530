"""Context-mixed training (issue 10, items 1 and 5): the mix, its contexts, the one shared builder, the store."""

from __future__ import annotations

import re
import sqlite3

import pytest

from loramem import Document, Fact, SynthConfig
from loramem.phonebook import phonebook
from loramem.readers import ICLContext, RAGIndex
from loramem.readers.rag import RAGContext
from loramem.store import ModuleStore
from loramem.synth import DistractorPool, synthesize
from loramem.synth.context import mentions
from loramem.text import chunk_text, render_context, render_item

BOOK = phonebook(8, seed=3)
DOCS = [
    Document("The Orrin Institute was founded in 1962 by Petra Holloway. It moved to Lake Varna in 1977. "
             "Its library holds 41000 maps of the northern coast.", title="Orrin Institute"),
    Document("Project Lumenfall launched in 2031 from Vellmoor. It carried 14 instruments to the outer moons.",
             title="Lumenfall"),
    Document("Kettleby Mills was founded by Edda Rourke in 1888. The mills spun wool for three counties.",
             title="Kettleby Mills"),
]


def lines(ctx: str) -> list[str]:
    return ctx.split("\n")


def kinds(item: Fact, examples: list) -> tuple[int, int, int]:
    """(bare, gold, distractor-only) training questions of one fact."""
    mine = [e for e in examples if e.item_id == item.id and e.format == "qa"]
    gold = [e for e in mine if e.context is not None and render_item(item) in lines(e.context)]
    dist = [e for e in mine if e.context is not None and render_item(item) not in lines(e.context)]
    return len([e for e in mine if e.context is None]), len(gold), len(dist)


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({}, (3, 2, 1)),  # the defaults: canonical + one paraphrase with gold, one of them with distractors only
        ({"context_questions": 3, "gold_share": 1 / 3, "distractor_share": 1.0}, (3, 1, 3)),
        ({"context_questions": 1, "gold_share": 0.0, "distractor_share": 1.0}, (3, 0, 1)),
        ({"context_mix": False}, (3, 0, 0)),  # the switch
    ],
)
def test_the_mix_has_the_configured_shares(fields, expected):
    examples = synthesize(BOOK, SynthConfig(qa_paraphrases=3, **fields))
    for fact in BOOK:
        assert kinds(fact, examples) == expected
    assert all(e.context is None for e in examples if e.probe)  # recall probes stay bare questions


def test_gold_contexts_hold_the_gold_item_among_namespace_distractors():
    cfg = SynthConfig(min_distractors=2, max_distractors=4)
    examples = synthesize(BOOK[:4], cfg, namespace_items=BOOK[4:])
    rendered = {render_item(f) for f in BOOK}
    sizes = set()
    for fact in BOOK[:4]:
        for e in (e for e in examples if e.item_id == fact.id and e.context is not None):
            ctx = lines(e.context)
            assert set(ctx) <= rendered and len(set(ctx)) == len(ctx)  # namespace items, no look-alikes needed
            n_distractors = len([ln for ln in ctx if ln != render_item(fact)])
            assert 2 <= n_distractors <= 4
            sizes.add(n_distractors)
    assert len(sizes) > 1  # the count is drawn from the range
    assert synthesize(BOOK[:4], cfg, namespace_items=BOOK[4:]) == examples  # deterministic for a seed
    assert synthesize(BOOK[:4], SynthConfig(seed=1, min_distractors=2, max_distractors=4),
                      namespace_items=BOOK[4:]) != examples


def test_a_small_namespace_gets_look_alikes_of_the_items_shape():
    fact = Fact("Dr. Alma Vance", "phone number", "555-201-7733")
    examples = synthesize([fact], SynthConfig())
    ctxs = [e.context for e in examples if e.context is not None]
    assert ctxs
    shape = re.compile(r"^Question: What is the phone number of Dr\. [A-Z][a-z]+ [A-Z][a-z]+\? Answer: \d{3}-\d{3}-\d{4}$")
    others = [ln for c in ctxs for ln in lines(c) if ln != render_item(fact)]
    assert len(others) >= 2 * len(ctxs) and all(shape.match(ln) for ln in others), others
    assert all("Alma Vance" not in ln for ln in others)


def test_update_never_uses_the_old_value_as_a_distractor():
    old, new = Fact("Ada", "phone number", "555-000-1111"), Fact("Ada", "phone number", "555-999-2222")
    examples = synthesize([new], SynthConfig(), namespace_items=[old, *BOOK])
    assert all(render_item(old) not in lines(e.context) for e in examples if e.context is not None)


def test_a_gold_context_is_byte_identical_to_what_the_readers_build(tiny_model_dir):
    from transformers import AutoTokenizer

    examples = synthesize(BOOK[:1], SynthConfig(), namespace_items=BOOK[1:])
    gold = next(e.context for e in examples if e.context and render_item(BOOK[0]) in lines(e.context))
    by_line = {render_item(f): f for f in BOOK}
    in_order = [by_line[ln] for ln in lines(gold)]
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert ICLContext(tok, in_order).text == gold

    class Index:  # retrieval returns these items, best first
        def search(self, questions, k):
            return [[(1.0, {"text": render_item(f), "source": f.id}) for f in in_order[:k]] for _ in questions]

    assert RAGContext(Index(), k=len(in_order)).contexts(["q"])[0].text == gold  # type: ignore[arg-type]


def test_document_contexts_use_the_rag_chunks_gold_first_then_distractors():
    cfg = SynthConfig(context_chunk_words=12)
    examples = synthesize(DOCS[:1], cfg, namespace_items=DOCS[1:])
    own = chunk_text(render_item(DOCS[0]), 12, 12 // 8)
    index = RAGIndex.build(DOCS, chunk_size=12)
    every_chunk = {r["text"] for hits in index.search(["x"], len(index)) for _, r in hits}
    ctx_examples = [e for e in examples if e.context is not None]
    assert ctx_examples
    for e in ctx_examples:
        assert set(lines(e.context)) <= every_chunk  # the chunks the RAG reader would retrieve, verbatim
        gold = [c for c in lines(e.context) if c in own and e.completion in c]
        probe = next(p for p in examples if p.probe and p.prompt == e.prompt)
        assert probe.completion == e.completion
        if any(c in own for c in lines(e.context)) and gold:
            continue  # a gold context
        assert all(e.completion not in c for c in lines(e.context))  # distractors only: answer from memory
    golds = [e for e in ctx_examples if any(e.completion in c for c in lines(e.context))]
    dists = [e for e in ctx_examples if not any(e.completion in c for c in lines(e.context))]
    assert golds and dists


def test_a_lone_document_draws_distractors_from_its_other_chunks():
    cfg = SynthConfig(context_chunk_words=8)
    examples = synthesize(DOCS[:1], cfg)
    own = set(chunk_text(render_item(DOCS[0]), 8, 1))
    ctxs = [e.context for e in examples if e.context is not None]
    assert ctxs and all(set(lines(c)) <= own for c in ctxs)  # no look-alikes needed: it has chunks enough
    # A newer version of the same document (update) never lends its chunks as distractors.
    newer = Document(DOCS[0].text.replace("1962", "1963"), title=DOCS[0].title)
    for e in (e for e in synthesize([newer], cfg, namespace_items=[DOCS[0]]) if e.context is not None):
        assert not set(lines(e.context)) & (own - set(chunk_text(render_item(newer), 8, 1)))


def test_encode_of_a_context_example_is_what_ask_feeds(mem, monkeypatch):
    import loramem.read as read

    example = next(e for e in synthesize(BOOK[:1], SynthConfig(), namespace_items=BOOK[1:]) if e.context)
    fed: list[list[int]] = []

    class Spy:
        def generate(self, input_ids, attention_mask, **kw):
            fed.append(input_ids[0][attention_mask[0].bool()].tolist())
            raise KeyboardInterrupt  # stop here: only the input matters

    real = read.generate_texts
    monkeypatch.setattr(read, "generate_texts", lambda model, *a, **kw: real(Spy(), *a, **kw))
    with pytest.raises(KeyboardInterrupt):
        mem.ask(example.prompt, namespace=None, context=example.context)
    ids, mask = mem.prompt_format.encode(example)
    n_prompt = mask.index(True)
    assert ids[:n_prompt] == fed[0]
    assert ids[:n_prompt] != mem.prompt_format.encode(
        type(example)(example.item_id, "qa", example.prompt, example.completion))[0][:n_prompt]


def test_write_persists_contexts_and_reports_recall_with_context(mem):
    report = mem.write(BOOK[:4], namespace="pb")
    kept = mem.store.examples("pb", [f.id for f in BOOK[:4]])
    assert kept == synthesize(BOOK[:4], mem.synth_config)  # contexts round-trip through the store
    assert any(e.context for e in kept)
    info = mem.store.modules("pb")[0]
    assert 0.0 <= report.details["recall_with_context"] <= 1.0
    assert info.report["recall_with_context"] == report.details["recall_with_context"]
    # The next write draws distractors from what the namespace holds.
    mem.write(BOOK[4:5], namespace="pb")
    new = [e for e in mem.store.examples("pb", [BOOK[4].id]) if e.context]
    held = {render_item(f) for f in BOOK[:4]}
    assert new and all(set(lines(e.context)) - {render_item(BOOK[4])} <= held for e in new)


def test_forget_leaves_no_context_quoting_the_item(mem):
    mem.write(BOOK[:4], namespace="pb", synth=SynthConfig())  # the default mix: contexts quote neighbours
    gone = BOOK[0]
    kept_ids = [f.id for f in BOOK[1:4]]
    assert any(mentions(e.context, gone) for e in mem.store.examples("pb", kept_ids) if e.context)
    mem.forget(gone.id, namespace="pb", verify=False)
    left = [e for e in mem.store.examples("pb", kept_ids) if e.context]
    assert left and not any(mentions(e.context, gone) for e in left)


def test_context_mix_off_writes_bare_questions_only(mem):
    mem.write(BOOK[:2], namespace="pb", synth=SynthConfig(context_mix=False))
    assert all(e.context is None for e in mem.store.examples("pb", [f.id for f in BOOK[:2]]))


def test_a_store_from_before_the_context_column_opens(tmp_path):
    root = tmp_path / "old"
    (root / "modules").mkdir(parents=True)
    db = sqlite3.connect(root / "manifest.sqlite")
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "CREATE TABLE examples (namespace TEXT NOT NULL, item_id TEXT NOT NULL, idx INTEGER NOT NULL, "
        "format TEXT NOT NULL, prompt TEXT, completion TEXT NOT NULL, probe INTEGER NOT NULL, "
        "PRIMARY KEY (namespace, item_id, idx));"
        "INSERT INTO examples VALUES ('ns', 'fact-1', 0, 'qa', 'What?', 'that', 1);"
    )
    db.commit()
    db.close()
    store = ModuleStore(root)
    (ex,) = store.examples("ns", ["fact-1"])
    assert (ex.prompt, ex.completion, ex.probe, ex.context) == ("What?", "that", True, None)
    store.close()


def test_synth_config_validates_the_mix():
    for bad, match in [({"gold_share": 1.5}, "gold_share: expected a float in"),
                       ({"min_distractors": 0}, "min_distractors: expected an int >= 1"),
                       ({"min_distractors": 3, "max_distractors": 2}, r"max_distractors: expected >= min_distractors"),
                       ({"context_questions": 0}, "context_questions"),
                       ({"context_chunk_words": 2}, "context_chunk_words")]:
        with pytest.raises(ValueError, match=match):
            SynthConfig(**bad)
    assert SynthConfig.from_json(SynthConfig(gold_share=0.25).to_json()) == SynthConfig(gold_share=0.25)
    assert all(SynthConfig.help()[f] for f in ("context_mix", "gold_share", "distractor_share", "min_distractors"))


def test_distractor_pool_chunks_like_the_rag_index():
    pool = DistractorPool(DOCS, SynthConfig(context_chunk_words=16))
    assert pool.chunks(DOCS[0]) == chunk_text(render_item(DOCS[0]), 16, 2)
    assert render_context(pool.chunks(DOCS[0])).count("\n") == len(pool.chunks(DOCS[0])) - 1
