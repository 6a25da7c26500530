import pytest

from loramem import Document, Fact, SynthConfig
from loramem.synth import (
    HELDOUT_QA_TEMPLATE,
    QA_TEMPLATES,
    get_synthesizer,
    synthesize,
)
from loramem.synth.llm import parse_qa, parse_questions
from loramem.synth.rules import cloze_spans, sentences

FACT = Fact("Ada Lovelace", "birth year", "1815")
DOC = Document(
    "The Orrin Institute was founded in 1962 by Petra Holloway. It moved to Lake Varna in 1977.",
    title="Orrin Institute history",
)


def test_qa_paraphrases_for_facts():
    ex = synthesize([FACT], SynthConfig(formats=("qa",), qa_paraphrases=3, context_mix=False))
    assert len(ex) == 3 and all(e.completion == "1815" for e in ex)
    assert ex[0].probe and ex[0].prompt == FACT.canonical_question
    assert len({e.prompt for e in ex}) == 3
    assert all(HELDOUT_QA_TEMPLATE.split()[0] not in e.prompt for e in ex[1:])
    assert HELDOUT_QA_TEMPLATE not in QA_TEMPLATES


@pytest.mark.parametrize(
    "formats, expected",
    [
        (("original",), {"original", "probe"}),
        (("rewrite",), {"rewrite", "probe"}),
        (("qa", "rewrite", "original"), {"qa", "rewrite", "original"}),
    ],
)
def test_fact_format_mixtures(formats, expected):
    ex = synthesize([FACT], SynthConfig(formats=formats))
    assert {e.format for e in ex} == expected
    assert any(e.probe for e in ex)  # recall is always measurable


def test_rule_synthesis_for_documents():
    assert sentences(DOC.text) == [
        "The Orrin Institute was founded in 1962 by Petra Holloway.",
        "It moved to Lake Varna in 1977.",
    ]
    spans = cloze_spans("The Orrin Institute was founded in 1962 by Petra Holloway.", 3)
    assert "1962" in spans and "Petra Holloway" in spans
    ex = synthesize([DOC], SynthConfig(formats=("qa", "original", "rewrite")))
    qa = [e for e in ex if e.format == "qa"]
    assert any("____" in e.prompt and e.completion == "1962" for e in qa)
    assert any(e.format == "original" and e.completion == DOC.text for e in ex)
    assert any(e.format == "rewrite" and "Orrin Institute history says" in e.completion for e in ex)


def test_summary_needs_an_llm():
    with pytest.raises(ValueError, match="needs an LLM"):
        synthesize([DOC], SynthConfig(formats=("summary",)))


def test_llm_synthesizer_with_a_callable():
    prompts = []

    def fake_llm(prompt: str) -> str:
        prompts.append(prompt)
        if prompt.startswith("Write"):
            return "Q: When was the Orrin Institute founded?\nA: 1962\nQ: Who founded it?\nA: Petra Holloway"
        return "A rewritten text about the institute, founded 1962."

    ex = synthesize([DOC], SynthConfig(formats=("qa", "rewrite", "summary")), llm=fake_llm)
    assert [(e.prompt, e.completion) for e in ex if e.format == "qa" and e.context is None] == [
        ("When was the Orrin Institute founded?", "1962"),
        ("Who founded it?", "Petra Holloway"),
    ]
    assert {e.format for e in ex} == {"qa", "rewrite", "summary"}
    assert any(DOC.text in p for p in prompts)


def test_llm_synthesizer_with_an_invoke_object():
    class Msg:
        content = "Q: a?\nA: b"

    class ChatModel:
        def invoke(self, prompt):
            return Msg()

    assert parse_qa(Msg.content) == [("a?", "b")]
    ex = get_synthesizer("llm", llm=ChatModel()).examples(DOC, SynthConfig())
    assert ex[0].prompt == "a?"


MAYA = Document("Maya is allergic to peanuts.")
GROUPED = ("Q: What is Maya allergic to?\nQ: Which food gives Maya a reaction?\n1. Q: What can't Maya eat?\nA: peanuts\n"
           "\nQ: Who is allergic to peanuts?\nA: Maya\nQ: a question without an answer?\n")


def test_llm_is_asked_for_user_phrasings_both_ways_and_one_is_held_out():
    prompts = []

    def fake_llm(prompt: str) -> str:
        prompts.append(prompt)
        return GROUPED

    assert parse_questions(GROUPED) == [(["What is Maya allergic to?", "Which food gives Maya a reaction?",
                                          "What can't Maya eat?"], "peanuts"), (["Who is allergic to peanuts?"], "Maya")]
    cfg = SynthConfig(context_mix=False, wh_questions=3)
    ex = synthesize([MAYA], cfg, llm=fake_llm)
    assert "4 different phrasings" in prompts[0] and "other way round" in prompts[0] and "Whose daughter" in prompts[0]
    held = [e for e in ex if e.format == "heldout"]
    assert len(held) == 1 and held[0].completion == "peanuts" and not held[0].trained and not held[0].probe
    trained = [(e.prompt, e.completion) for e in ex if e.format == "qa"]
    assert len(trained) == 3 and ("Who is allergic to peanuts?", "Maya") in trained and held[0].prompt not in dict(trained)
    assert [e.prompt for e in ex if e.probe] == [next(p for p, a in trained if a == "peanuts"), "Who is allergic to peanuts?"]
    assert synthesize([MAYA], cfg, llm=fake_llm) == ex  # the held-out phrasing is drawn by seed and document id


def test_unknown_synthesizer_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown synthesizer 'gpt'; valid: \['llm', 'rules', 'template'\]"):
        get_synthesizer("gpt")
