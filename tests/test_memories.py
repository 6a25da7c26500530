"""The shipped memories (``loramem.memories``): well-formed, shipped as package data, and asked in words that
no synthesizer template writes for them."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import pytest

from loramem import SynthConfig
from loramem.memories import SHIPPED, Memory, load_memories
from loramem.synth import synthesize
from loramem.synth.questions import wh_questions

MEMORIES = load_memories()


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_the_set_is_large_varied_and_well_formed() -> None:
    assert len(MEMORIES) >= 60
    assert len({m.id for m in MEMORIES}) == len(MEMORIES) and len({m.text for m in MEMORIES}) == len(MEMORIES)
    assert len({m.kind for m in MEMORIES}) >= 6
    for m in MEMORIES:
        assert len(m.questions) == 2 and len({_norm(q) for q in m.questions}) == 2
        assert all(q.endswith("?") for q in m.questions)
        assert m.answer.lower() in m.text.lower(), m.id  # the answer appears in its memory sentence
        assert m.text.endswith(".") and m.text.count(". ") == 0  # one sentence
        assert m.correct(f"I think it is {m.answer.upper()}.") and not m.correct("I don't know.")


def test_no_question_of_the_set_is_one_the_synthesizer_writes() -> None:
    docs = [m.document for m in MEMORIES]
    written = {_norm(e.prompt) for cfg in (SynthConfig(), SynthConfig(wh_probe=True, wh_questions=9))
               for e in synthesize(docs, cfg) if e.prompt}
    written |= {_norm(q.text) for m in MEMORIES for q in wh_questions(m.text)}  # every phrasing, trained or not
    clashes = [(m.id, q) for m in MEMORIES for q in m.questions if _norm(q) in written]
    assert not clashes


def test_most_memories_have_wh_questions() -> None:
    """The set is of the shapes the synthesizer knows: otherwise it would measure the cloze questions only."""
    covered = [m for m in MEMORIES if any(m.answer.lower() in q.answer.lower() for q in wh_questions(m.text))]
    assert len(covered) >= 0.9 * len(MEMORIES)


def test_the_set_ships_as_package_data() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib")
    import tomllib

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["loramem"]
    rel = SHIPPED.relative_to(root / "src" / "loramem").as_posix()
    assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"{rel} is not in package-data {patterns}"


def test_a_bad_file_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"id": "a", "kind": "k", "text": "Ivo likes jazz.", "questions": ["q?", "r?"], "answer": "jazz"}\n'
                   '{"id": "b", "text": "x"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2: expected a memory"):
        load_memories(bad)
    with pytest.raises(ValueError, match="expected exactly 2 non-empty questions"):
        Memory("c", "k", "Ivo likes jazz.", ("q?",), "jazz")
    with pytest.raises(ValueError, match="expected an answer that appears in the text"):
        Memory("c", "k", "Ivo likes jazz.", ("q?", "r?"), "blues")
