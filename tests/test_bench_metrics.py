"""Benchmark text metrics and the LLM judge, on hand-checked values."""

from __future__ import annotations

import json

import pytest

from benchmarks.metrics import (
    TEXT_METRICS,
    LLMJudge,
    aggregate,
    bleu4,
    contains,
    exact_match,
    normalised_match,
    normalize,
    rouge_l,
    text_metrics,
    token_f1,
)


def test_normalize_is_squad_style() -> None:
    assert normalize("  The Cat, an  apple; A dog!  ") == "cat apple dog"
    assert normalize("Theatre") == "theatre"  # articles only as whole words


def test_identical_strings_score_one_everywhere() -> None:
    m = text_metrics("Veltrane Dynamics was founded in 1987.", ["Veltrane Dynamics was founded in 1987."])
    assert set(m) == set(TEXT_METRICS)
    for name, value in m.items():
        assert value == pytest.approx(1.0), name


def test_disjoint_strings_score_zero() -> None:
    m = text_metrics("purple elephants", ["1987"])
    for name, value in m.items():
        assert value == pytest.approx(0.0), name


def test_empty_prediction_scores_zero() -> None:
    assert text_metrics("", ["1987"]) == dict.fromkeys(TEXT_METRICS, 0.0)
    assert text_metrics("   ", ["1987", "nineteen"]) == dict.fromkeys(TEXT_METRICS, 0.0)
    assert text_metrics("1987", []) == dict.fromkeys(TEXT_METRICS, 0.0)


def test_exact_and_normalised_match() -> None:
    assert exact_match(" Brennick ", "Brennick") == 1.0
    assert exact_match("brennick", "Brennick") == 0.0
    assert normalised_match("the Brennick.", "Brennick") == 1.0
    assert normalised_match("Brennick town", "Brennick") == 0.0


def test_contains_is_whole_word() -> None:
    assert contains("It was founded in 1987.", "1987") == 1.0
    assert contains("Headquarters: the town of Brennick!", "Brennick") == 1.0
    assert contains("19870", "1987") == 0.0
    assert contains("Brennickford", "Brennick") == 0.0
    assert contains("It employs 4200 people", "4,200") == 1.0  # punctuation goes in normalisation


def test_token_f1_hand_checked() -> None:
    # normalised: "cat sat" vs "cat sat down": precision 1, recall 2/3 -> F1 0.8
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    assert token_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # duplicates count once each
    assert token_f1("dog", "cat") == 0.0


def test_rouge_l_uses_stemming() -> None:
    assert rouge_l("running dogs", "run dog") > 0.99
    assert rouge_l("", "run dog") == 0.0


def test_bleu4_smoothed_on_short_strings() -> None:
    assert bleu4("founded in 1987", "it was founded in 1987") > 0.0
    assert bleu4("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert bleu4("purple", "1987") == pytest.approx(0.0, abs=1e-9)


def test_text_metrics_takes_best_reference() -> None:
    m = text_metrics("Brennick", ["Calvoria", "Brennick"])
    assert m["exact"] == 1.0 and m["rougeL"] == pytest.approx(1.0)
    with pytest.raises(TypeError, match="string"):
        text_metrics("x", "x")  # type: ignore[arg-type]


def test_aggregate_means() -> None:
    rows: list[dict[str, object]] = [{"f1": 1.0, "exact": 1.0, "id": "a"}, {"f1": 0.5, "exact": 0.0}, {"f1": 0.0}]
    assert aggregate(rows, ["f1", "exact", "missing"]) == {"f1": pytest.approx(0.5), "exact": pytest.approx(0.5)}
    assert aggregate(rows) == {"f1": pytest.approx(0.5), "exact": pytest.approx(0.5)}
    assert aggregate([], ["f1"]) == {}


def test_judge_parses_json_reply() -> None:
    prompts: list[str] = []

    def fake(prompt: str) -> str:
        prompts.append(prompt)
        return 'Sure. {"score": 7, "rationale": "right year, no town"} trailing text {"score": 1}'

    out = LLMJudge(fake).score("When was X founded?", "1987", "In 1987 in Brennick.")
    assert out == {"judge_score": 7.0, "rationale": "right year, no town", "judge": "fake"}
    assert "When was X founded?" in prompts[0] and "1987" in prompts[0] and "In 1987 in Brennick." in prompts[0]
    assert '"score"' in prompts[0]


def test_judge_junk_scores_zero() -> None:
    out = LLMJudge(lambda p: "I think it is quite good!", name="j").score("q", "ref", "pred")
    assert out["judge_score"] == 0.0
    assert out["rationale"].startswith("unparseable judge output:")
    assert out["judge"] == "j"
    assert LLMJudge(lambda p: '{"rationale": "no score"}').score("q", "r", "p")["judge_score"] == 0.0


def test_judge_clamps_score() -> None:
    assert LLMJudge(lambda p: json.dumps({"score": 15, "rationale": "great"})).score("q", "r", "p")["judge_score"] == 10.0
    assert LLMJudge(lambda p: '{"score": -3, "rationale": "bad"}').score("q", "r", "p")["judge_score"] == 0.0
    assert LLMJudge(lambda p: '```json\n{"score": "8.5", "rationale": "ok"}\n```').score("q", "r", "p")["judge_score"] == 8.5


def test_judge_name_and_chat_model() -> None:
    class Message:
        content = '{"score": 9, "rationale": "fine"}'

    class FakeChat:
        model_name = "gpt-judge"

        def invoke(self, prompt: str) -> Message:
            return Message()

    out = LLMJudge(FakeChat()).score("q", "r", "p")
    assert out == {"judge_score": 9.0, "rationale": "fine", "judge": "gpt-judge"}

    class Plain:
        def __call__(self, prompt: str) -> str:
            return "{}"

    assert LLMJudge(Plain()).name == "Plain"
    with pytest.raises(ValueError, match="None"):
        LLMJudge(None)
