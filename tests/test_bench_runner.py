"""The benchmark runner and report: config validation, grid expansion, a smoke run on the tiny model, plots."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import main
from benchmarks.config import CONFIGS, Experiment, expand_grid
from benchmarks.experiments.readers import limit_questions
from benchmarks.output import iter_results
from benchmarks.report import capacity_data, write_report
from benchmarks.runner import run_experiment
from benchmarks.tasks import Question, available_tasks
from benchmarks.validate import validate_run

TINY_TRAIN = {"lr": 5e-3, "lora_plus_ratio": 1.0, "max_steps": 40, "progress": False, "seq_len": 128,
              "batch_tokens": 256, "min_epochs": 1, "target_recall": 0.9}


@pytest.mark.parametrize(("data", "message"), [
    ({"model": "x"}, "name: expected a name"),
    ({"name": "a b"}, "name: expected letters, digits"),
    ({"name": "x", "colour": 1}, "unknown keys ['colour']"),
    ({"name": "x", "task": {"name": "nope"}}, "task: name: expected one of"),
    ({"name": "x", "task": {"name": "phonebook", "sise": 3}}, "task: unknown keys ['sise']"),
    ({"name": "x", "task": {"name": "phonebook", "size": -1}}, "task: size: expected an int >= 0, got -1"),
    ({"name": "x", "readers": []}, "readers: expected a non-empty list"),
    ({"name": "x", "readers": ["lora", "oracle"]}, "readers: expected each one of"),
    ({"name": "x", "readers": ["lora", "lora"]}, "readers: expected no duplicates"),
    ({"name": "x", "readers": ["lora@embedding"]}, "readers: expected @<routing> only on lora readers"),
    ({"name": "x", "readers": ["base@oracle"], "modules": "per_group"}, "@<routing> only on lora readers"),
    ({"name": "x", "readers": ["lora@nope"], "modules": "per_group"}, "@<routing> with routing one of"),
    ({"name": "x", "lora": {"rank": 4}}, "lora: LoraSpec: unknown fields ['rank']"),
    ({"name": "x", "train": {"max_steps": 0}}, "train: max_steps: expected an int >= 1, got 0"),
    ({"name": "x", "rag": {"k": 0}}, "rag: k: expected an int >= 1, got 0"),
    ({"name": "x", "icl": {"budget": 5}}, "icl: unknown keys ['budget']"),
    ({"name": "x", "modules": "many"}, "modules: expected 'single' or 'per_group', got 'many'"),
    ({"name": "x", "routing": "psychic"}, "routing: expected one of"),
    ({"name": "x", "limit": 0}, "limit: expected null or an int >= 1"),
    ({"name": "x", "judge": {"model": "same", "temperature": 0}}, "judge: unknown keys ['temperature']"),
    ({"name": "x", "grid": {"lora.r": 4}}, "grid['lora.r']: expected a non-empty list"),
    ({"name": "x", "grid": {"lora.rank": [4]}}, "'rank' is not a key of lora"),
    ({"name": "x", "grid": {"model": ["a", "b"]}}, "'model' cannot vary within a run"),
    ({"name": "x", "grid": {"lora.r": [4, 0]}}, "grid point 1 {'lora.r': 0}: lora: r: expected an int >= 1, got 0"),
])
def test_config_errors_name_the_problem(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Experiment.from_dict(data)
    assert message in str(err.value)


def test_config_round_trips_and_shipped_configs_are_valid() -> None:
    exp = Experiment.from_dict({"name": "rt", "grid": {"lora.r": [2, 4]}, "synth": {"formats": ["qa", "rewrite"]}})
    assert Experiment.from_dict(json.loads(json.dumps(exp.to_dict()))).to_dict() == exp.to_dict()
    shipped = sorted(CONFIGS.glob("*.json"))
    assert {p.stem for p in shipped} >= {"multidoc-longdoc", "formats-longdoc", "axes-phonebook", "axes-longdoc", "counterfact"}
    for path in shipped:
        task = json.loads(path.read_text()).get("task", {}).get("name", "phonebook")  # the default task
        if task in available_tasks():
            assert Experiment.from_file(path).name == path.stem


def test_grid_expands_to_the_cartesian_product_last_key_fastest() -> None:
    assert expand_grid({}) == [{}]
    assert expand_grid({"lora.r": [2, 4], "task.size": [8, 16]}) == [
        {"lora.r": 2, "task.size": 8}, {"lora.r": 2, "task.size": 16},
        {"lora.r": 4, "task.size": 8}, {"lora.r": 4, "task.size": 16},
    ]
    exp = Experiment.from_dict({"name": "g", "grid": {"lora.r": [2, 4], "task.options.tokens": [100, 200]},
                                "task": {"name": "phonebook", "size": 0}})
    points = exp.points()
    assert [(p.namespace, p.experiment.lora.r, p.experiment.task.options) for p in points] == [
        ("p000", 2, {"tokens": 100}), ("p001", 2, {"tokens": 200}),
        ("p002", 4, {"tokens": 100}), ("p003", 4, {"tokens": 200}),
    ]
    assert points[1].label == "lora.r=2 task.options.tokens=200"
    assert all(p.experiment.grid == {} for p in points)
    whole = Experiment.from_dict({"name": "t", "grid": {"task": [{"name": "phonebook", "size": 3}]}})
    assert whole.points()[0].experiment.task.size == 3 and whole.points()[0].label == "phonebook/3"


def test_limit_takes_questions_round_robin_over_kinds() -> None:
    qs = [Question(id=f"{k}{i}", text="q?", answers=["a"], kind=k) for k in ("a", "b") for i in range(3)]
    assert [q.id for q in limit_questions(qs, 3)] == ["a0", "a1", "b0"]
    assert limit_questions(qs, None) == qs


@pytest.fixture(scope="module")
def smoke_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "smoke"
    assert main(["run", "--smoke", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    return out


def test_smoke_run_gives_valid_scored_results_for_every_task_and_reader(smoke_run: Path) -> None:
    assert validate_run(smoke_run) == []
    results = json.loads((smoke_run / "results.json").read_text())
    assert results["status"] == "finished"
    assert results["versions"]["torch"] and results["machine"]["matmul_gflops"] > 0
    assert set(results["git"]) == {"commit", "dirty"}
    assert not (smoke_run / "store").exists()  # the scratch store is removed unless --keep-store
    tasks = [p["task"]["name"] for p in results["points"]]
    assert sorted(tasks) == available_tasks()
    samples = [json.loads(line) for line in (smoke_run / "samples.jsonl").read_text().splitlines()]
    for p in results["points"]:
        assert list(p["readers"]) == ["base", "icl", "rag", "lora", "lora+rag", "lora+icl"]
        assert p["write"]["steps"] > 0 and p["write"]["trainable_params"] > 0 and p["rag_index"]["chunks"] > 0
        for name, agg in p["readers"].items():
            rows = [s for s in samples if s["point"] == p["index"] and s["reader"] == name]
            assert agg["n"] == len(rows) == p["task"]["questions"] > 0
            assert p["task"]["primary"] in agg["metrics"]
            assert agg["latency_s"] > 0 and agg["peak_rss_mb"] > 0
            assert all({"exact", "f1", "rougeL"} <= set(r["metrics"]) for r in rows)
            if name.startswith("lora"):
                assert all(r["modules"] for r in rows)
            if "rag" in name:
                assert all(r["sources"] for r in rows)
        if p["task"]["name"] == "phonebook":
            assert p["readers"]["icl"]["dropped_items"] == 0


def test_validation_reports_bad_metrics_and_missing_samples(smoke_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(smoke_run, bad)
    lines = (bad / "samples.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["metrics"]["f1"] = 1.5
    (bad / "samples.jsonl").write_text("\n".join([json.dumps(row), *lines[2:]]) + "\n")
    problems = validate_run(bad)
    assert any("f1=1.5 is outside [0.0, 1.0]" in p for p in problems)
    assert any("samples.jsonl has" in p for p in problems)


def test_report_renders_tables_and_plots(smoke_run: Path, tmp_path: Path) -> None:
    assert main(["report", str(smoke_run), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "| point | reader | n | metric | value |" in text and "lora+rag" in text
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "readers.png" in pngs
    for name in pngs:
        assert f"({name})" in text
    assert (tmp_path / "readers.png").read_bytes()[:4] == b"\x89PNG"


def _capacity_results() -> dict[str, Any]:
    recall = {(2, 8): 1.0, (2, 16): 0.95, (2, 32): 0.4, (8, 8): 1.0, (8, 16): 1.0, (8, 32): 0.92}
    params = {2: 1000, 8: 4000}
    points = [
        {"index": i, "label": f"lora.r={r} task.size={s}", "overrides": {"lora.r": r, "task.size": s},
         "task": {"name": "phonebook", "primary": "correct"}, "write": {"trainable_params": params[r], "recall": v},
         "readers": {"lora": {"n": s, "metrics": {"correct": v}, "by_kind": {"recall": {"n": s, "metrics": {"correct": v}}}}}}
        for i, ((r, s), v) in enumerate(recall.items())
    ]
    return {"name": "capacity", "config": {"grid": {"lora.r": [2, 8], "task.size": [8, 16, 32]}}, "points": points}


def test_capacity_plot_and_saturation_table_from_a_hand_made_run(tmp_path: Path) -> None:
    results = _capacity_results()
    cap = capacity_data(results)
    assert cap is not None and cap["size_key"] == "task.size"
    assert cap["saturation"] == {2: 16.0, 8: 32.0}
    report = write_report([(tmp_path, results)], tmp_path).read_text()
    assert "### Capacity" in report
    assert "| r2 | 1,000 | 16 | 16000.000 |" in report and "| r8 | 4,000 | 32 | 8000.000 |" in report
    for name in ("capacity.png", "efficiency.png", "readers.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert capacity_data({"config": {"grid": {"task.size": [1, 2]}}, "points": []}) is None


def test_list_shows_tasks_readers_and_configs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "phonebook" in out and "lora+icl" in out and "axes-phonebook" in out and "smoke" in out


def test_per_group_modules_with_oracle_routing(tiny_model_dir: Path, tmp_path: Path) -> None:
    exp = Experiment.from_dict({
        "name": "groups", "model": str(tiny_model_dir), "readers": ["lora", "lora+icl@stack", "lora@embedding",
                                                          "lora+icl", "lora+icl@embedding@gate"],
        "task": {"name": "phonebook", "size": 4, "options": {"groups": 2}},
        "modules": "per_group", "routing": "oracle", "lora": {"r": 4}, "train": {**TINY_TRAIN, "max_steps": 10},
        "read": {"max_new_tokens": 8, "progress": False}, "icl": {"token_budget": 128},
    })
    results = run_experiment(exp, tmp_path, matmul_seconds=0.05)
    assert validate_run(tmp_path) == []
    point = results["points"][0]
    assert point["write"]["modules"] == 2 and len(set(point["modules"].values())) == 2
    for name in ("lora", "lora+icl@stack"):
        assert point["readers"][name]["metrics"]["route_correct"] == 1.0
    assert all(not math.isnan(v) for v in point["readers"]["lora"]["metrics"].values())
    embedded = point["readers"]["lora@embedding"]
    assert embedded["ask"] == {"route": "embedding"} and 0.0 <= embedded["metrics"]["route_correct"] <= 1.0
    assert point["readers"]["lora+icl@embedding@gate"]["ask"] == {"route": "embedding"}
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    for s in samples:  # the gated readers (a plain hybrid gates) answered twice; the stacked one did not
        hybrid = "+" in s["reader"]
        assert ("gate" in s["details"]) == (hybrid and not s["reader"].endswith("@stack")), s["reader"]


def test_report_renders_a_calibration(tmp_path: Path) -> None:
    from loramem.capacity import CapacityModel

    points = [{"r": r, "entries": n, "knowledge_tokens": 12 * n, "trainable_params": 1000 * r,
               "recall": 1.0 if n <= 4 * r else 0.3, "steps": 5, "seconds": 1.0} for r in (2, 8) for n in (4, 8, 32)]
    CapacityModel(base_model="m", base_fingerprint=None, threshold=0.9, points=points).save(tmp_path / "capacity.json")
    report = write_report(list(iter_results([tmp_path])), tmp_path).read_text()
    assert "loramem calibrate" in report and "| r8 | 8,000 | 32 |" in report
    assert (tmp_path / "capacity.png").exists() and (tmp_path / "efficiency.png").exists()
