"""Wh-questions from sentences (``loramem.synth.questions``) and how rule synthesis trains and holds them out."""

from __future__ import annotations

import random

import pytest

from loramem import Document, SynthConfig
from loramem.synth import RuleSynthesizer, synthesize
from loramem.synth.questions import document_questions, groups, wh_questions
from loramem.synth.rules import pick_wh

# sentence -> (question, answer) pairs it must yield (a reverse question is answered with the subject).
SHAPES = [
    ("Maya's daughter is named Lily.", [("What is the name of Maya's daughter?", "Lily"),
                                        ("Who is Maya's daughter?", "Lily"), ("Whose daughter is Lily?", "Maya")]),
    ("Maya Lind is allergic to peanuts.", [("What is Maya Lind allergic to?", "peanuts"),
                                           ("Who is allergic to peanuts?", "Maya Lind")]),
    ("Tom works as a nurse.", [("What does Tom do for a living?", "nurse"), ("What is Tom's job?", "nurse"),
                               ("Who works as a nurse?", "Tom")]),
    ("Tom works as a nurse at St Olav Hospital.", [("Where does Tom work?", "St Olav Hospital")]),
    ("Ana has a cat named Biscuit.", [("What is the name of Ana's cat?", "Biscuit"),
                                      ("Whose cat is named Biscuit?", "Ana")]),
    ("Ana lives in Bergen.", [("Where does Ana live?", "Bergen"), ("Who lives in Bergen?", "Ana")]),
    ("Ana moved to Oslo in 2019.", [("Where did Ana move to?", "Oslo"), ("When did Ana move to Oslo?", "2019")]),
    ("Ana was born in Lisbon in 1987.", [("Where was Ana born?", "Lisbon"), ("When was Ana born?", "1987")]),
    ("Ana was born on March 3, 1990.", [("What is Ana's date of birth?", "March 3, 1990")]),
    ("Ivo works at Kestrel Labs.", [("Where does Ivo work?", "Kestrel Labs"), ("Who works at Kestrel Labs?", "Ivo")]),
    ("Ivo likes jazz.", [("What does Ivo like?", "jazz"), ("Who likes jazz?", "Ivo")]),
    ("Ivo hates cilantro.", [("What does Ivo hate?", "cilantro")]),
    ("Ivo prefers tea to coffee.", [("What does Ivo prefer to coffee?", "tea")]),
    ("Ivo enjoys baking bread.", [("What does Ivo like doing?", "baking bread")]),
    ("Ivo's favourite colour is teal.", [("What is Ivo's favourite colour?", "teal"),
                                         ("Which colour does Ivo like best?", "teal"),
                                         ("Whose favourite colour is teal?", "Ivo")]),
    ("Ivo drives a blue Volvo.", [("What car does Ivo drive?", "blue Volvo"), ("Who drives a blue Volvo?", "Ivo")]),
    ("Ivo owns a red canoe.", [("What does Ivo own?", "red canoe")]),
    ("Ivo is 42 years old.", [("How old is Ivo?", "42"), ("What is Ivo's age?", "42")]),
    ("Ivo's dentist appointment is on March 3.", [("When is Ivo's dentist appointment?", "March 3")]),
    ("Ivo has a dentist appointment on June 12.", [("When does Ivo have a dentist appointment?", "June 12")]),
    ("Ivo's locker number is 42.", [("What is Ivo's locker number?", "42"), ("Whose locker number is 42?", "Ivo")]),
    ("Ivo has 3 children.", [("How many children does Ivo have?", "3")]),
    ("Ivo is a carpenter.", [("Who is a carpenter?", "Ivo")]),
    ("Ivo plays the cello.", [("What instrument does Ivo play?", "cello"), ("Who plays the cello?", "Ivo")]),
    ("Ivo speaks Portuguese.", [("What language does Ivo speak?", "Portuguese")]),
    ("Ivo studied marine biology at Kestrel University.", [("What did Ivo study?", "marine biology"),
                                                          ("Where did Ivo study?", "Kestrel University")]),
    ("The captain of the Brightwater is Mara Quell.", [("Who is the Brightwater's captain?", "Mara Quell")]),
    ("Ivo is married to Petra Lind.", [("Who is Ivo married to?", "Petra Lind"),
                                       ("Who is Petra Lind married to?", "Ivo")]),
    ("Ivo is from Norway.", [("Where is Ivo from?", "Norway")]),
    ("Ivo's office is in Building 7.", [("Where is Ivo's office?", "Building 7")]),
    ("Maya's son is 7.", [("How old is Maya's son?", "7")]),
    ("Zev Huxley founded Blue Harbor in 1962.", [("When did Zev Huxley found Blue Harbor?", "1962"),
                                                 ("Who founded Blue Harbor?", "Zev Huxley")]),
    ("The Orrin Institute was founded in 1962 by Petra Holloway.",
     [("When was the Orrin Institute founded?", "1962"), ("Who founded the Orrin Institute?", "Petra Holloway")]),
    ("Ivo got married on June 12.", [("When did Ivo get married?", "June 12")]),
]


@pytest.mark.parametrize(("sentence", "expected"), SHAPES, ids=[s for s, _ in SHAPES])
def test_shapes_yield_their_questions(sentence: str, expected: list[tuple[str, str]]) -> None:
    got = wh_questions(sentence)
    pairs = {(q.text, q.answer) for q in got}
    for pair in expected:
        assert pair in pairs, f"{pair} not in {sorted(pairs)}"
    assert all(q.answer.lower() in sentence.lower() for q in got)  # answers are spans of the sentence
    main = groups(got)[0]
    assert not main[0].reverse and len(main) >= 2  # a main forward question with several phrasings


def test_reverse_questions_are_marked_and_answered_with_the_subject() -> None:
    got = wh_questions("Maya's daughter is named Lily.")
    rev = [q for q in got if q.reverse]
    assert rev and {q.answer for q in rev} == {"Maya"} and {q.answer for q in got if not q.reverse} == {"Lily"}
    assert {q.shape for q in got} == {"possessive"}


@pytest.mark.parametrize("sentence", [
    "The weather was nice.", "It moved to Lake Varna in 1977.", "Maya is happy.", "What is Maya allergic to?",
    "Project Lumenfall launched in 2031 from Vellmoor.", "She works as a nurse.", "",
])
def test_sentences_of_no_known_shape_yield_nothing(sentence: str) -> None:
    assert wh_questions(sentence) == []  # a pronoun with no named subject before it is skipped too


def test_pronouns_resolve_to_the_last_named_subject() -> None:
    qs = document_questions(["Maya Lind is allergic to peanuts.", "She works as a nurse.",
                             "Her daughter is named Lily.", "The weather was nice.", "They live in Oslo."])
    assert ("What does Maya Lind do for a living?", "nurse") in {(q.text, q.answer) for q in qs[1]}
    assert ("Who is Maya Lind's daughter?", "Lily") in {(q.text, q.answer) for q in qs[2]}
    assert ("Whose daughter is Lily?", "Maya Lind") in {(q.text, q.answer) for q in qs[2]}
    assert qs[3] == [] and ("Where does Maya Lind live?", "Oslo") in {(q.text, q.answer) for q in qs[4]}


def test_pick_wh_holds_out_one_main_phrasing_and_trains_every_answer() -> None:
    qs = wh_questions("Ana moved to Oslo in 2019.")  # answers: Oslo (main), 2019, Ana (reverse)
    trained, held = pick_wh(qs, 3, random.Random(0))
    assert held is not None and held.answer == "Oslo" and not held.reverse and held not in trained
    assert [q.answer for q in trained] == ["Oslo", "2019", "Ana"]  # round-robin over the answers
    assert pick_wh(qs, 0, random.Random(0)) == ([], None)
    assert pick_wh(qs[:1], 3, random.Random(0)) == (qs[:1], None)  # one phrasing: nothing to hold out


DOC = Document("Maya Lind is allergic to peanuts. She works as a nurse. It rained in Vellmoor all week.")


def test_rule_synthesis_trains_wh_questions_and_holds_one_out_per_sentence() -> None:
    cfg = SynthConfig(context_mix=False)
    ex = synthesize([DOC], cfg)
    held = [e for e in ex if e.format == "heldout"]
    assert len(held) == 2  # the two sentences of a known shape; the third has cloze questions only
    assert all(not e.trained and not e.probe and e.item_id == DOC.id for e in held)
    trained_prompts = {e.prompt for e in ex if e.trained}
    assert not any(e.prompt in trained_prompts for e in held)  # never trained, in any format
    wh = [e for e in ex if e.format == "qa" and "____" not in (e.prompt or "") and "follows" not in (e.prompt or "")]
    assert len(wh) == 2 * cfg.wh_questions and {"peanuts", "nurse", "Maya Lind"} <= {e.completion for e in wh}
    probes = [e for e in ex if e.probe]
    assert len(probes) == 3 and all("____" in (e.prompt or "") for e in probes)  # cloze probes, as before


def test_held_out_phrasing_is_deterministic_for_a_seed_and_doc() -> None:
    def held(seed: int, doc: Document) -> list[str | None]:
        return [e.prompt for e in RuleSynthesizer().examples(doc, SynthConfig(seed=seed)) if e.format == "heldout"]

    assert held(0, DOC) == held(0, DOC)
    names = ["Ivo Marsh", "Ada Brisk", "Tom Vell", "Nia Orr", "Bo Linden", "Eli Sand", "Kit Rowe", "Uma Fenn"]
    docs = [Document(f"{n} is allergic to peanuts.") for n in names]
    # Over seeds and documents, different phrasings are held out (the draw is not fixed to one position).
    assert len({(p or "").replace(n, "X") for n, d in zip(names, docs) for s in (0, 1) for p in held(s, d)}) > 1


def test_wh_probe_and_no_wh_questions() -> None:
    ex = synthesize([DOC], SynthConfig(context_mix=False, wh_probe=True))
    probes = [e for e in ex if e.probe]
    assert [e.completion for e in probes if "____" not in (e.prompt or "")] == ["peanuts", "nurse"]
    assert len(probes) == 3  # the sentence without a wh-question keeps its cloze probe
    plain = synthesize([DOC], SynthConfig(context_mix=False, wh_questions=0))
    assert not any(e.format == "heldout" for e in plain) and all("____" in (e.prompt or "") or "follows" in
                                                                  (e.prompt or "") for e in plain)


def test_without_qa_only_the_held_out_phrasing_is_emitted() -> None:
    ex = synthesize([DOC], SynthConfig(formats=("original",), context_mix=False))
    assert {e.format for e in ex} == {"original", "probe", "heldout"}
    assert all("____" in (e.prompt or "") for e in ex if e.format == "probe")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("wh_questions", -1, "wh_questions: expected an int >= 0, got -1"),
    ("wh_questions", True, "wh_questions: expected an int >= 0, got True"),
    ("wh_probe", "yes", "wh_probe: expected a bool, got 'yes'"),
])
def test_wh_config_is_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SynthConfig(**{field: value})
