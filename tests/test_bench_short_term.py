"""The short_term experiment on the tiny model: both parts, their validation and the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.config import CONFIGS, Experiment, ShortTermOptions
from benchmarks.experiments.short_term import pct
from benchmarks.runner import run_experiment
from benchmarks.validate import validate_run

TRAIN = {"lr": 5e-3, "lora_plus_ratio": 1.0, "max_steps": 40, "progress": False, "seq_len": 64,
         "batch_tokens": 128, "min_epochs": 1, "target_recall": 0.9}


def test_percentiles_are_nearest_rank():
    values = [float(i) for i in range(1, 51)]
    assert pct(values, 95) == 48.0 and pct(values, 50) == 25.0 and pct([3.0], 95) == 3.0 and pct([], 50) == 0.0


def test_the_committed_config_and_bad_options():
    exp = Experiment.from_file(CONFIGS / "short-term.json")
    assert isinstance(exp.options, ShortTermOptions) and exp.task.size == 100 and exp.options.remembers == 50
    with pytest.raises(ValueError, match="remembers: expected an int in"):
        ShortTermOptions(remembers=0)
    with pytest.raises(ValueError, match="read_every_s: expected a number of seconds > 0"):
        ShortTermOptions(read_every_s=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the tiny model's recall is not the point
def test_short_term_gives_valid_results(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "st"
    exp = Experiment.from_dict({
        "name": "st", "kind": "short_term", "model": str(tiny_model_dir), "task": {"name": "phonebook", "size": 6},
        "lora": {"r": 2}, "train": TRAIN, "synth": {"context_mix": False},
        "read": {"max_new_tokens": 6, "progress": False},
        "options": {"remembers": 4, "initial": 2, "idle_reads": 2, "read_every_s": 0.01, "after_reads": 2}})
    run_experiment(exp, out, matmul_seconds=0.05)
    assert validate_run(out) == []
    (p,) = json.loads((out / "results.json").read_text())["points"]
    r, b = p["remember"], p["background"]
    assert r["n"] == 4 and 0 < r["p50_s"] <= r["p95_s"] <= r["max_s"] and r["retrieved"] == 1.0
    assert b["old_version"] == 1 and b["commits"] and b["latency_s"]["idle"]["n"] == 2
    assert b["latency_s"]["after"]["n"] == 2 and b["versions_consistent"]
    assert b["consolidation_s"] == max(c[0] for c in b["commits"])
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["reader"] for s in samples].count("remember") == 4
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "remember: 4 one-sentence memories in a row" in (tmp_path / "rep" / "REPORT.md").read_text()
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    results = json.loads((out / "results.json").read_text())
    results["points"][0]["remember"]["target_met"] = not results["points"][0]["remember"]["target_met"]
    (bad / "results.json").write_text(json.dumps(results))
    assert any("target_met disagrees" in x for x in validate_run(bad))
