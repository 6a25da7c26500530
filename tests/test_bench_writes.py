"""The write_recipes and incremental experiments on the tiny model: they run, validate, report, and catch a
doctored result; their configs name their problems."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import main
from benchmarks.config import CONFIGS, Experiment, IncrementalOptions, WriteRecipesOptions
from benchmarks.experiments.write_recipes import rotations
from benchmarks.runner import run_experiment
from benchmarks.validate import validate_run

TRAIN = {"lr": 5e-3, "lora_plus_ratio": 1.0, "max_steps": 8, "progress": False, "seq_len": 64,
         "batch_tokens": 128, "min_epochs": 1}
BASE = {"task": {"name": "phonebook", "size": 4}, "lora": {"r": 4}, "train": TRAIN,
        "synth": {"qa_paraphrases": 1, "context_mix": False}}
WR = {"name": "wr", "kind": "write_recipes", **BASE}
INC = {"name": "inc", "kind": "incremental", **BASE}


@pytest.mark.parametrize(("data", "message"), [
    ({**WR, "options": {"recipes": {}}}, "recipes: expected a non-empty object"),
    ({**WR, "options": {"recipes": {"a": {"optim": {}}}}}, "recipes.a: expected an object with any of"),
    ({**WR, "options": {"recipes": {"a": {"train": {"lr": -1}}}}}, "lr: expected > 0"),
    ({**WR, "options": {"recipes": {"a": {"train": {"magic": 1}}}}}, "unknown fields ['magic']"),
    ({**WR, "options": {"repeats": 0}}, "repeats: expected an int >= 1, got 0"),
    ({**INC, "options": {"replays": []}}, "replays: expected a non-empty list"),
    ({**INC, "options": {"replays": [-1]}}, "replays: expected a non-empty list of ints >= 0 or null"),
    ({**INC, "options": {"replays": [0, 16], "lr_scales": [0.5]}}, "lr_scales: expected null or a list of 2 floats"),
    ({**INC, "options": {"replays": [16], "lr_scales": [0.0]}}, "lr_scales: expected null or a list of 1 floats"),
    ({**INC, "options": {"chunks": -1}}, "chunks: expected an int >= 0"),
])
def test_write_experiment_configs_name_the_problem(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Experiment.from_dict(data)
    assert message in str(err.value)


def test_shipped_write_configs_load_and_rotate_fairly() -> None:
    wr = Experiment.from_file(CONFIGS / "write-recipes.json")
    assert isinstance(wr.options, WriteRecipesOptions) and next(iter(wr.options.recipes)) == "today"
    inc = Experiment.from_file(CONFIGS / "incremental.json")
    assert isinstance(inc.options, IncrementalOptions) and inc.options.chunks == 10
    assert inc.train.replay_items is not None and inc.train.kl_weight == 0.0  # the chunked writes are bounded too
    assert inc.options.lr_scales is not None and len(inc.options.lr_scales) == len(inc.options.replays)
    order = rotations(["a", "b", "c"], 3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each first once, each 3 times


@pytest.fixture(scope="module")
def recipes_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "wr"
    exp = Experiment.from_dict({**WR, "model": str(tiny_model_dir), "options": {
        "recipes": {"ref": {}, "sched": {"train": {"recalled_replay": 0.0}}}, "repeats": 2}})
    with pytest.warns(RuntimeWarning):  # 8 steps are too few for the tiny model: every write says so
        run_experiment(exp, out, matmul_seconds=0.05)
    return out


def test_write_recipes_gives_valid_results(recipes_run: Path, tmp_path: Path) -> None:
    assert validate_run(recipes_run) == []
    (p,) = json.loads((recipes_run / "results.json").read_text())["points"]
    for name in ("ref", "sched"):
        writes, med = p["recipes"][name]["writes"], p["recipes"][name]["median"]
        assert len(writes) == 2 and all(w["recipe"] == name and w["tokens_trained"] > 0 for w in writes)
        assert med["tokens_trained"] == statistics.median(w["tokens_trained"] for w in writes)
    ratio = p["recipes"]["ref"]["median"]["tokens_trained"] / p["recipes"]["sched"]["median"]["tokens_trained"]
    assert p["recipes"]["sched"]["median"]["tokens_vs_first"] == pytest.approx(ratio, abs=0.01)
    assert main(["report", str(recipes_run), "--out", str(tmp_path)]) == 0
    assert "| sched |" in (tmp_path / "REPORT.md").read_text()
    rows = [json.loads(line) for line in (recipes_run / "samples.jsonl").read_text().splitlines()]
    (tmp_path / "run").mkdir()
    shutil.copy(recipes_run / "results.json", tmp_path / "run" / "results.json")
    (tmp_path / "run" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    assert any("2 writes in results.json, 1 in samples.jsonl" in q for q in validate_run(tmp_path / "run"))


def test_incremental_gives_valid_results(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "inc"
    exp = Experiment.from_dict({**INC, "model": str(tiny_model_dir),
                                "train": {**TRAIN, "replay_items": 1}, "options": {"replays": [0, None], "chunks": 2}})
    with pytest.warns(RuntimeWarning):
        run_experiment(exp, out, matmul_seconds=0.05)
    assert validate_run(out) == []
    (p,) = json.loads((out / "results.json").read_text())["points"]
    assert p["full"]["items"] == 4 and [a["items"] for a in p["adds"]] == [5, 6]
    assert [a["replayed"] for a in p["adds"]] == [0, 5]  # replay 0, then every held item (null)
    # the share is taken on the unrounded seconds; the rows keep 2 decimals of seconds in the tiny model's
    assert p["adds"][0]["share_of_full_seconds"] == pytest.approx(p["adds"][0]["seconds"] / p["full"]["seconds"],
                                                                  rel=0.1, abs=0.05)
    assert len(p["chunks"]["writes"]) == 2 and p["chunks"]["writes"][-1]["items"] == 4
    assert p["chunks"]["writes"][-1]["replayed"] == 1  # the experiment's own replay_items
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "| add one | 5 | 0 | 1 |" in (tmp_path / "rep" / "REPORT.md").read_text()
    assert [a["lr_scale"] for a in p["adds"]] == [1.0, 1.0]  # no lr_scales: the experiment's warm_lr_scale
