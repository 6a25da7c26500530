"""The modules and write-throughput experiments on the tiny model, their config validation, and the contention
rule (load average before the run, matmul rate at start and end) on fake readings."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest

from benchmarks import provenance, runner
from benchmarks.__main__ import main
from benchmarks.config import (
    CONFIGS,
    KINDS,
    Experiment,
    ModulesOptions,
    NaturalQuestionsOptions,
    WriteThroughputOptions,
)
from benchmarks.experiments.modules import interleaved, spread
from benchmarks.provenance import LOAD_PER_CPU, RATE_KEPT, Reading, contention
from benchmarks.runner import run_experiment
from benchmarks.validate import validate_run

TRAIN = {"lr": 5e-3, "lora_plus_ratio": 1.0, "max_steps": 6, "progress": False, "seq_len": 64,
         "batch_tokens": 128, "min_epochs": 1, "target_recall": 0.9}


def reading(load: float | None, rate: float) -> Reading:
    return Reading(at="2026-01-01T00:00:00+00:00", load_1m=load, matmul_gflops=rate)


# --- the contention rule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end", "cpus", "expected"), [
    (reading(0.2, 190.0), reading(1.9, 185.0), 2, []),  # idle before; our own load at the end does not count
    (reading(2 * LOAD_PER_CPU, 190.0), reading(0.0, 190.0), 2, []),  # exactly at the limit: not above it
    (reading(1.5, 190.0), reading(1.5, 190.0), 2, ["load average 1.50 on 2 CPU(s)"]),
    (reading(0.6, 190.0), None, 1, ["load average 0.60 on 1 CPU(s)"]),
    (reading(0.1, 190.0), reading(0.1, RATE_KEPT * 190.0 - 1), 2, ["fell from 190.0 GFLOP/s"]),
    (reading(0.1, 190.0), reading(0.1, RATE_KEPT * 190.0), 2, []),  # exactly the kept share: fine
    (reading(None, 100.0), reading(None, 30.0), None, ["fell from 100.0"]),  # no load average on this OS
    (reading(4.0, 190.0), reading(4.0, 40.0), 2, ["load average 4.00", "fell from 190.0"]),
])
def test_contention_rule_on_fake_readings(start: Reading, end: Reading | None, cpus: int | None,
                                          expected: list[str]) -> None:
    reasons = contention(start, end, cpus)
    assert len(reasons) == len(expected)
    for reason, part in zip(reasons, expected):
        assert part in reason


def test_a_contended_run_says_so_in_results_and_on_stderr(tiny_model_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    readings = iter([reading(9.5, 150.0), reading(9.5, 30.0)])
    monkeypatch.setattr(runner, "take_reading", lambda seconds=0.0: next(readings))
    exp = Experiment.from_dict({"name": "busy", "model": str(tiny_model_dir), "readers": ["base"],
                                "task": {"name": "phonebook", "size": 2}, "read": {"max_new_tokens": 4, "progress": False}})
    results = run_experiment(exp, tmp_path)
    assert results["contended"] is True and len(results["contention"]) == 2
    assert results["load"]["start"] == {"at": "2026-01-01T00:00:00+00:00", "load_1m": 9.5, "matmul_gflops": 150.0}
    assert results["load"]["end"]["matmul_gflops"] == 30.0 and results["machine"]["matmul_gflops"] == 150.0
    err = capsys.readouterr().err
    assert err.count("likely contended") == 2 and "load average 9.50" in err and "fell from 150.0" in err
    assert validate_run(tmp_path) == []
    saved = json.loads((tmp_path / "results.json").read_text())
    saved["contended"] = False  # the verdict must agree with its reasons
    (tmp_path / "results.json").write_text(json.dumps(saved))
    assert "contended disagrees with the reasons listed in contention" in validate_run(tmp_path)


def test_take_reading_measures_now() -> None:
    r = provenance.take_reading(0.05)
    assert r.matmul_gflops > 0 and (r.load_1m is None or r.load_1m >= 0)


# --- timing helpers --------------------------------------------------------------------------------------------


def test_throughput_passes_interleave_and_balance() -> None:
    assert interleaved(1) == [True, False]
    assert interleaved(3) == [True, False, False, True, True, False]
    order = interleaved(5)
    assert order.count(True) == order.count(False) == 5
    assert spread([3.0, 1.0, 2.0]) == {"values": [3.0, 1.0, 2.0], "median": 2.0, "min": 1.0, "max": 3.0}


# --- config validation ---------------------------------------------------------------------------------------

MOD = {"name": "m", "kind": "modules", "task": {"name": "phonebook", "size": 8}}
WT = {"name": "w", "kind": "write_throughput", "task": {"name": "phonebook", "size": 8}}
NQ = {"name": "n", "kind": "natural_questions"}


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "kind": "magic"}, f"kind: expected one of {list(KINDS)}, got 'magic'"),
    ({"name": "x", "options": {"modules": 2}}, "options: expected nothing for kind 'readers'"),
    ({**MOD, "options": {"modules": 1}}, "options: modules: expected an int >= 2, got 1"),
    ({**MOD, "options": {"shards": 2}}, "options: unknown keys ['shards']"),
    ({**MOD, "options": {"merge_methods": ["average"]}}, "options: merge_methods: expected a list of"),
    ({**MOD, "options": {"throughput_repeats": 0}}, "options: throughput_repeats: expected an int >= 1, got 0"),
    ({**MOD, "options": {"modules": 5}}, "task: expected size >= 2 x options.modules (10) entries, got 8"),
    ({**MOD, "options": {"changes": 5}}, "options: expected changes <= entries per module (2), got 5"),
    ({**MOD, "task": {"name": "longdoc", "size": 8}}, "task: expected the phonebook task for kind 'modules'"),
    ({**MOD, "grid": {"lora.r": [2, 4]}}, "grid: expected nothing for kind 'modules'"),
    ({**MOD, "readers": ["lora"]}, "readers: expected the default for kind 'modules'"),
    ({**MOD, "limit": 3}, "limit: expected the default for kind 'modules'"),
    ({**MOD, "options": {"parts": ["budget", "magic"]}}, "options: parts: expected a non-empty list of ['budget',"),
    ({**MOD, "options": {"select_top_k": 1}}, "options: select_top_k: expected an int >= 2"),
    ({**MOD, "options": {"select_merge_methods": ["avg"]}}, "options: select_merge_methods: expected a list of"),
    ({"name": "x", "readers": ["lora@gate"]}, "readers: expected @gate only on a hybrid reader"),
    ({"name": "x", "readers": ["lora+rag@gate@gate"]}, "readers: expected at most one @<routing> and one @gate"),
    ({"name": "x", "readers": ["lora+rag@blend"]}, "readers: expected @<routing> only on lora readers with modules"),
    ({**WT, "options": {"steps": 0}}, "options: steps: expected an int >= 1, got 0"),
    ({**WT, "options": {"examples_per_step": "24"}}, "options: examples_per_step: expected an int >= 1, got '24'"),
    ({**WT, "task": {"name": "phonebook", "size": 0}}, "task: expected size >= 1 entries, got 0"),
    ({**NQ, "task": {"name": "phonebook", "size": 4}}, "task: expected the default for kind 'natural_questions'"),
    ({**NQ, "options": {"memories": 10_000}}, "options: memories: expected an int in [0, "),
    ({**NQ, "options": {"target": 1.5}}, "options: target: expected a share in [0, 1], got 1.5"),
    ({**NQ, "options": {"base": "yes"}}, "options: base: expected a bool, got 'yes'"),
])
def test_experiment_kind_errors_name_the_problem(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Experiment.from_dict(data)
    assert message in str(err.value)


def test_kind_configs_round_trip_and_the_shipped_ones_load() -> None:
    for data in (MOD, WT, NQ, {"name": "r"}):
        exp = Experiment.from_dict(data)
        assert Experiment.from_dict(json.loads(json.dumps(exp.to_dict()))).to_dict() == exp.to_dict()
    mod = Experiment.from_file(CONFIGS / "modules-phonebook.json")
    assert mod.kind == "modules" and isinstance(mod.options, ModulesOptions)
    assert (mod.options.modules, mod.options.throughput_repeats, mod.lora.r, mod.task.size) == (4, 5, 4, 40)
    sel = Experiment.from_file(CONFIGS / "modules-select-phonebook.json")
    assert (sel.options.modules, sel.options.parts, sel.options.select_top_k, sel.task.size) == (8, ["selection"], 3, 32)
    assert Experiment.from_dict({"name": "x", "readers": ["lora+rag", "lora+rag@gate"]}).readers[1] == "lora+rag@gate"
    wt = Experiment.from_file(CONFIGS / "write-throughput.json")
    assert isinstance(wt.options, WriteThroughputOptions) and (wt.options.steps, wt.options.examples_per_step) == (12, 24)
    assert Experiment.from_dict(MOD).options == ModulesOptions()  # options default when left out
    nq = Experiment.from_file(CONFIGS / "natural-questions.json")
    assert isinstance(nq.options, NaturalQuestionsOptions) and nq.options.memories == 0 and not nq.synth.context_mix


# --- the experiments on the tiny model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def modules_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "modules"
    exp = Experiment.from_dict({
        **MOD, "model": str(tiny_model_dir), "lora": {"r": 2}, "train": TRAIN, "synth": {"qa_paraphrases": 1},
        "read": {"max_new_tokens": 8, "progress": False}, "icl": {"token_budget": 256},
        "options": {"modules": 2, "changes": 1, "merge_methods": ["linear", "cat"], "throughput_repeats": 3},
    })
    run_experiment(exp, out, matmul_seconds=0.05)
    return out


def test_modules_experiment_gives_valid_results(modules_run: Path) -> None:
    assert validate_run(modules_run) == []
    results = json.loads((modules_run / "results.json").read_text())
    assert results["kind"] == "modules" and results["status"] == "finished"
    assert isinstance(results["contended"], bool) and results["load"]["end"]["matmul_gflops"] > 0
    (p,) = results["points"]
    assert sorted(p["writes"]) == ["pb.s0", "pb.s1", "pb1.all"]
    assert p["writes"]["pb1.all"]["trainable_params"] == 2 * p["writes"]["pb.s0"]["trainable_params"]
    assert p["readers"]["1 x r4, everything"]["steps_given"] == p["writes"]["pb.s0"]["steps"] + p["writes"]["pb.s1"]["steps"]
    assert p["readers"]["2 x r2, oracle routing"]["n"] == 8 and "routing" in p["readers"]["2 x r2, embedding routing"]
    t = p["throughput"]
    assert t["order"] == ["mixed_batch", "module_by_module", "module_by_module", "mixed_batch", "mixed_batch",
                          "module_by_module"]
    for side in ("mixed_batch", "module_by_module"):
        assert len(t[side]["values"]) == 3 and t[side]["median"] == pytest.approx(statistics.median(t[side]["values"]))
        assert t[side]["min"] <= t[side]["median"] <= t[side]["max"]
    assert t["ratio_of_medians"] == pytest.approx(t["mixed_batch"]["median"] / t["module_by_module"]["median"], abs=1e-3)
    assert {(m["modules"], m["method"]) for m in p["merging"]} == {(2, "linear"), (2, "cat")}
    ud = p["update_delete"]
    assert ud["changes"] == 1 and set(ud["generated_correct"]) >= {"deleted", "updated: new value", "deleted, bare model"}
    samples = [json.loads(line) for line in (modules_run / "samples.jsonl").read_text().splitlines()]
    assert {s["reader"] for s in samples} == set(p["readers"])


@pytest.fixture(scope="module")
def selection_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "selection"
    exp = Experiment.from_dict({
        **MOD, "task": {"name": "phonebook", "size": 6}, "model": str(tiny_model_dir), "lora": {"r": 2},
        "train": TRAIN, "synth": {"qa_paraphrases": 1}, "read": {"max_new_tokens": 8, "progress": False},
        "options": {"modules": 3, "changes": 0, "parts": ["selection"], "select_top_k": 2,
                    "select_merge_methods": ["cat"]},
    })
    run_experiment(exp, out, matmul_seconds=0.05)
    return out


def test_selection_part_reports_routing_selection_and_answers_separately(selection_run: Path, tmp_path: Path) -> None:
    assert validate_run(selection_run) == []
    (p,) = json.loads((selection_run / "results.json").read_text())["points"]
    assert sorted(p["writes"]) == ["pb.s0", "pb.s1", "pb.s2"]  # the sector modules only: no 1 x r6 module
    assert p["throughput"] is None and p["merging"] == [] and p["update_delete"] is None
    ways = p["selection"]["ways"]
    assert list(ways) == ["selection: oracle", "selection: embedding top-1", "selection: embedding top-2 select",
                          "selection: embedding top-2 select, no margin", "selection: embedding top-2 merge cat"]
    assert ways["selection: embedding top-2 select, no margin"]["select_margin"] is None
    assert ways["selection: embedding top-2 select"]["select_margin"] == 0.1  # ReadConfig's default
    assert ways["selection: oracle"]["route_correct"] == ways["selection: oracle"]["selected_correct"] == 1.0
    assert "selected_correct" not in ways["selection: embedding top-2 merge cat"]  # a merge selects no module
    samples = [json.loads(line) for line in (selection_run / "samples.jsonl").read_text().splitlines()]
    top2 = [s for s in samples if s["reader"] == "selection: embedding top-2 select, no margin"]
    assert len(top2) == 6 and all(len(s["modules"]) == 1 for s in top2)
    for s in top2:  # the chosen module is the gold one exactly when selected_correct says so
        gold = f"pb.s{int(s['question_id'][1:]) % 3}"
        assert s["metrics"]["selected_correct"] == float(s["modules"] == [gold])
        assert s["metrics"]["route_correct"] == float(gold in [r[0] for r in s["details"]["route"]])
        if len(s["details"]["route"]) > 1:
            assert len(s["details"]["select"]) == len(s["details"]["route"])
    assert main(["report", str(selection_run), "--out", str(tmp_path)]) == 0
    assert "Selection against merging (top-2)" in (tmp_path / "REPORT.md").read_text()
    bad = tmp_path / "bad"
    shutil.copytree(selection_run, bad)
    results = json.loads((bad / "results.json").read_text())
    results["points"][0]["selection"]["ways"]["selection: embedding top-1"]["route_correct"] = 0.123
    (bad / "results.json").write_text(json.dumps(results))
    assert any("route_correct 0.123 disagrees" in x for x in validate_run(bad))


def test_modules_validation_catches_a_doctored_throughput(modules_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(modules_run, bad)
    results = json.loads((bad / "results.json").read_text())
    t = results["points"][0]["throughput"]
    t["mixed_batch"]["values"] = t["mixed_batch"]["values"][:2]  # best of two against three: refused
    t["ratio_of_medians"] = 9.0
    (bad / "results.json").write_text(json.dumps(results))
    problems = validate_run(bad)
    assert "throughput mixed_batch: 2 timings, expected 3" in problems
    lines = (bad / "samples.jsonl").read_text().splitlines()
    (bad / "samples.jsonl").write_text("\n".join(lines[1:]) + "\n")
    assert any("samples.jsonl has 7" in p for p in validate_run(bad))


def test_modules_report_shows_median_and_spread(modules_run: Path, tmp_path: Path) -> None:
    assert main(["report", str(modules_run), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "3 interleaved timings a side" in text and "| mixed_batch |" in text
    assert "Ratio of the medians" in text and "### Update and delete (1 entries each)" in text


def test_committed_old_format_modules_result_renders_labelled(tmp_path: Path) -> None:
    old = Path(__file__).parent.parent / "benchmarks" / "results" / "modules-phonebook"
    if json.loads((old / "results.json").read_text()).get("kind") == "modules":
        pytest.skip("results/modules-phonebook has been rerun in the new format")
    assert main(["report", str(old), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "**Old format**" in text and "Read throughput (withdrawn)" in text and "| 4 x r4, oracle routing | 40 |" in text


@pytest.fixture(scope="module")
def write_throughput_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "wt"
    exp = Experiment.from_dict({**WT, "model": str(tiny_model_dir), "lora": {"r": 4},
                                "train": {"lr": 1e-3, "seq_len": 64, "batch_tokens": 128, "progress": False},
                                "synth": {"qa_paraphrases": 1}, "options": {"steps": 3, "examples_per_step": 4}})
    run_experiment(exp, out, matmul_seconds=0.05)
    return out


def test_write_throughput_gives_valid_results(write_throughput_run: Path, tmp_path: Path) -> None:
    assert validate_run(write_throughput_run) == []
    results = json.loads((write_throughput_run / "results.json").read_text())
    (p,) = results["points"]
    assert p["examples_trained"] == 12 and p["matmul_gflops"] == results["load"]["start"]["matmul_gflops"]
    for loop in ("loramem", "trainer+peft"):
        lp = p["loops"][loop]
        assert lp["steps"] == 3 and lp["examples"] == 12 and lp["padded_tokens"] >= lp["real_tokens"] > 0
        assert lp["examples_per_second"] == pytest.approx(12 / lp["seconds"], rel=2e-2)
    assert p["ratio_examples_per_second"] == pytest.approx(
        p["loops"]["loramem"]["examples_per_second"] / p["loops"]["trainer+peft"]["examples_per_second"], abs=1e-3)
    rows = [json.loads(line) for line in (write_throughput_run / "samples.jsonl").read_text().splitlines()]
    assert [(r["reader"], r["step"]) for r in rows] == [(loop, i) for loop in ("loramem", "trainer+peft") for i in range(3)]
    assert main(["report", str(write_throughput_run), "--out", str(tmp_path)]) == 0
    assert "| loramem |" in (tmp_path / "REPORT.md").read_text()
    # a step lost from samples.jsonl is caught
    (tmp_path / "run").mkdir()
    shutil.copy(write_throughput_run / "results.json", tmp_path / "run" / "results.json")
    (tmp_path / "run" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    assert any("loop loramem: 3 steps in results.json, 2 in samples.jsonl" in p for p in validate_run(tmp_path / "run"))


@pytest.fixture(scope="module")
def natural_questions_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "nq"
    exp = Experiment.from_dict({**NQ, "model": str(tiny_model_dir), "lora": {"r": 2}, "train": TRAIN,
                                "synth": {"context_mix": False}, "read": {"max_new_tokens": 6, "progress": False},
                                "options": {"memories": 3}})
    run_experiment(exp, out, matmul_seconds=0.05)
    return out


def test_natural_questions_gives_valid_results(natural_questions_run: Path, tmp_path: Path) -> None:
    assert validate_run(natural_questions_run) == []
    results = json.loads((natural_questions_run / "results.json").read_text())
    (p,) = results["points"]
    assert results["kind"] == "natural_questions" and p["task"]["size"] == 3
    w = p["write"]
    assert w["steps"] >= 1 and w["tokens_trained"] > 0 and w["modules"] == 1 and w["items"] == 3
    assert w["examples"]["heldout"] == 3 and w["examples"]["wh_trained"] == 9  # 3 memories x 3 phrasings
    readers = p["readers"]
    assert list(readers) == ["lora: set questions", "lora: held-out phrasings", "lora: trained phrasings",
                             "base: set questions"]
    assert readers["lora: set questions"]["n"] == readers["base: set questions"]["n"] == 6
    assert readers["lora: held-out phrasings"]["n"] == 3 and readers["lora: trained phrasings"]["n"] == 9
    assert p["summary"]["target"] == 0.7 and isinstance(p["summary"]["target_met"], bool)
    samples = [json.loads(line) for line in (natural_questions_run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 + 3 + 9 + 6 and {s["memory"] for s in samples} == {"m01", "m02", "m03"}
    held = {s["question"] for s in samples if s["reader"] == "lora: held-out phrasings"}
    trained = {s["question"] for s in samples if s["reader"] == "lora: trained phrasings"}
    assert held and not held & trained  # the held-out phrasings were never trained
    assert main(["report", str(natural_questions_run), "--out", str(tmp_path)]) == 0
    assert "| lora: set questions | 6 |" in (tmp_path / "REPORT.md").read_text()
    bad = tmp_path / "bad"
    shutil.copytree(natural_questions_run, bad)
    results["points"][0]["readers"]["lora: set questions"]["metrics"]["contains"] = 0.123
    (bad / "results.json").write_text(json.dumps(results))
    assert any("contains 0.123 disagrees with samples.jsonl" in x for x in validate_run(bad))
