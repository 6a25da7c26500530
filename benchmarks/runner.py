"""The benchmark runner: an experiment config (data) in, one results JSON and one samples JSONL out.

An ``Experiment`` names a model, a task, the readers to compare and the write/read settings; its ``grid``
expands into points (the cartesian product of dotted-key overrides, e.g. ``{"lora.r": [2, 4]}``). One run
loads the model once (one ``KnowledgeMemory`` on ``<out>/store``) and, per point:

1. builds the task's data (items, questions),
2. writes the items into LoRA module(s) when a LoRA reader is compared (namespace ``p000``, ``p001``, ...),
3. builds a RAG index when a RAG reader is compared,
4. asks every question through every reader in one batched call, timed, with peak memory sampled,
5. scores every answer (task metrics, text metrics, candidate log-probabilities, the optional judge).

``results.json`` is rewritten after every point, so an interrupted run keeps what it measured.
``validate_run`` checks a finished run (every point x reader has samples, every metric finite and in range).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import itertools
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loramem.config import LoraSpec, ReadConfig, SynthConfig, TrainConfig

if TYPE_CHECKING:
    from loramem import Answer, KnowledgeMemory

    from .tasks import Question, Task, TaskData

REPO = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs"
RESULTS = Path(__file__).resolve().parent / "results"
ALL_READERS: tuple[str, ...] = ("base", "icl", "rag", "lora", "lora+rag", "lora+icl")
VERSIONED = ("torch", "transformers", "peft", "accelerate", "sentence-transformers", "faiss-cpu", "loramem")
# Grid keys that cannot vary inside one run: the model loads once, and the rest describe the run itself.
FIXED_KEYS = ("name", "model", "grid", "judge", "notes")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _expect(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {got!r}")


def _check_keys(data: Any, valid: Sequence[str]) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {data!r:.80}")
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"unknown keys {unknown}; valid keys are {sorted(valid)}")


def _section(name: str, cls: Any, data: Any) -> Any:
    """A loramem config from its dict, with errors prefixed by the section name."""
    if isinstance(data, cls):
        return data
    _expect(isinstance(data, dict), name, "a JSON object", data)
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None


# --- the experiment config -------------------------------------------------------------------------------------


@dataclass
class TaskSpec:
    """Which task, how big: ``size`` in the task's own unit; ``options`` go to ``task.build``."""

    name: str = "phonebook"
    size: int = 16
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .tasks import available_tasks

        known = available_tasks()
        _expect(self.name in known, "name", f"one of {known}", self.name)
        _expect(isinstance(self.size, int) and self.size >= 0, "size", "an int >= 0", self.size)
        _expect(isinstance(self.seed, int), "seed", "an int", self.seed)
        _expect(isinstance(self.options, dict), "options", "a JSON object", self.options)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        _check_keys(data, [f.name for f in dataclasses.fields(cls)])
        return cls(**data)


@dataclass
class RagOptions:
    k: int = 3
    chunk_size: int = 128

    def __post_init__(self) -> None:
        _expect(isinstance(self.k, int) and self.k >= 1, "k", "an int >= 1", self.k)
        _expect(isinstance(self.chunk_size, int) and self.chunk_size >= 8, "chunk_size", "an int >= 8",
                self.chunk_size)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RagOptions:
        _check_keys(data, ["k", "chunk_size"])
        return cls(**data)


@dataclass
class IclOptions:
    token_budget: int = 2048

    def __post_init__(self) -> None:
        _expect(isinstance(self.token_budget, int) and self.token_budget >= 1, "token_budget", "an int >= 1",
                self.token_budget)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IclOptions:
        _check_keys(data, ["token_budget"])
        return cls(**data)


@dataclass
class JudgeConfig:
    """An LLM judge (``benchmarks.metrics.LLMJudge``) scoring every answer 0-10. ``model``: ``"same"`` is the
    run's model (with every module off); anything else is loaded like a base model (alias, folder, hub id)."""

    model: str = "same"
    max_new_tokens: int = 96  # the reply is a JSON object with a score and a short rationale

    def __post_init__(self) -> None:
        _expect(isinstance(self.model, str) and bool(self.model), "model", "a non-empty string", self.model)
        _expect(isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1, "max_new_tokens",
                "an int >= 1", self.max_new_tokens)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JudgeConfig:
        _check_keys(data, ["model", "max_new_tokens"])
        return cls(**data)


@dataclass
class Experiment:
    """One benchmark run, as data (a JSON file in ``benchmarks/configs``). See the module docstring."""

    name: str
    model: str = "smollm2-135m"
    task: TaskSpec = field(default_factory=TaskSpec)
    readers: list[str] = field(default_factory=lambda: list(ALL_READERS))
    lora: LoraSpec = field(default_factory=LoraSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    read: ReadConfig = field(default_factory=ReadConfig)
    rag: RagOptions = field(default_factory=RagOptions)
    icl: IclOptions = field(default_factory=IclOptions)
    modules: Literal["single", "per_group"] = "single"
    routing: str = "oracle"  # per_group modules: "oracle" (each question's own module) or a router name
    ask: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    judge: JudgeConfig | None = None
    limit: int | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        from loramem.readers import READERS

        _expect(isinstance(self.name, str) and bool(_NAME.fullmatch(self.name)), "name",
                "letters, digits and _ . - (a folder name)", self.name)
        _expect(isinstance(self.model, str) and bool(self.model.strip()), "model", "a non-empty string", self.model)
        self.task = _section("task", TaskSpec, self.task)
        self.lora = _section("lora", LoraSpec, self.lora)
        self.train = _section("train", TrainConfig, self.train)
        self.synth = _section("synth", SynthConfig, self.synth)
        self.read = _section("read", ReadConfig, self.read)
        self.rag = _section("rag", RagOptions, self.rag)
        self.icl = _section("icl", IclOptions, self.icl)
        if self.judge is not None:
            self.judge = _section("judge", JudgeConfig, self.judge)
        _expect(isinstance(self.readers, list) and len(self.readers) > 0, "readers", "a non-empty list", self.readers)
        routers = _routers()
        for r in self.readers:
            # "lora@embedding": a LoRA reader with its own routing, so one point compares routers on one set
            # of per_group modules (a plain "lora" uses the experiment's `routing`).
            base, _, route = r.partition("@")
            _expect(base in READERS, "readers", f"each one of {sorted(READERS)} (optionally @<routing>)", r)
            if route:
                _expect(base.startswith("lora") and self.modules == "per_group", "readers",
                        "@<routing> only on lora readers with modules 'per_group'", r)
                _expect(route in routers, "readers", f"@<routing> with routing one of {routers}", r)
        _expect(len(set(self.readers)) == len(self.readers), "readers", "no duplicates", self.readers)
        _expect(self.modules in ("single", "per_group"), "modules", "'single' or 'per_group'", self.modules)
        routers = _routers()
        _expect(self.routing in routers, "routing", f"one of {routers}", self.routing)
        _expect(isinstance(self.ask, dict), "ask", "a JSON object (keyword arguments of reader.answer)", self.ask)
        _expect(self.limit is None or (isinstance(self.limit, int) and self.limit >= 1), "limit",
                "null or an int >= 1 (questions per point)", self.limit)
        _expect(isinstance(self.notes, str), "notes", "a string", self.notes)
        _expect(isinstance(self.grid, dict), "grid", "a JSON object of dotted key -> list of values", self.grid)
        if self.grid:
            self.points()  # every point must be a valid experiment: fail now, not hours into the run

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        _check_keys(data, [f.name for f in dataclasses.fields(cls)])
        _expect("name" in data, "name", "a name for the experiment", None)
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Experiment:
        p = Path(path)
        if not p.exists():
            raise ValueError(f"{p}: no such config file (see `python -m benchmarks list`)")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "task": dataclasses.asdict(self.task),
            "readers": list(self.readers),
            "lora": self.lora.to_dict(),
            "train": self.train.to_dict(),
            "synth": self.synth.to_dict(),
            "read": self.read.to_dict(),
            "rag": dataclasses.asdict(self.rag),
            "icl": dataclasses.asdict(self.icl),
            "modules": self.modules,
            "routing": self.routing,
            "ask": copy.deepcopy(self.ask),
            "grid": copy.deepcopy(self.grid),
            "judge": dataclasses.asdict(self.judge) if self.judge else None,
            "limit": self.limit,
            "notes": self.notes,
        }

    def points(self) -> list[Point]:
        """The grid's points in order (the last key varies fastest); one point when there is no grid."""
        base = self.to_dict()
        base["grid"] = {}
        out = []
        for i, overrides in enumerate(expand_grid(self.grid)):
            data = copy.deepcopy(base)
            for key, value in overrides.items():
                set_dotted(data, key, value)
            try:
                exp = Experiment.from_dict(data)
            except ValueError as exc:
                raise ValueError(f"grid point {i} {overrides}: {exc}") from None
            out.append(Point(i, overrides, exp))
        return out


@dataclass
class Point:
    """One measurement: the experiment with one combination of grid overrides applied."""

    index: int
    overrides: dict[str, Any]
    experiment: Experiment

    @property
    def namespace(self) -> str:
        return f"p{self.index:03d}"

    @property
    def label(self) -> str:
        return point_label(self.overrides, self.experiment.name)


def _routers() -> list[str]:
    """Routing choices: ``oracle`` (the runner names each question's module) or a registered router."""
    try:
        from loramem.route import ROUTERS
    except ImportError:  # a loramem without routers
        return ["oracle"]
    return ["oracle", *sorted(r for r in ROUTERS if r != "oracle")]


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of dotted-key overrides: ``{"a.b": [1, 2], "c": [3]}`` -> ``[{a.b: 1, c: 3}, {a.b: 2, c: 3}]``."""
    _expect(isinstance(grid, dict), "grid", "a JSON object of dotted key -> list of values", grid)
    for key, values in grid.items():
        _expect(isinstance(values, list) and len(values) > 0, f"grid[{key!r}]", "a non-empty list of values", values)
        root = key.split(".")[0]
        if root in FIXED_KEYS:
            raise ValueError(f"grid: {key!r} cannot vary within a run (fixed per run: {', '.join(FIXED_KEYS)})")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


# Sections whose keys are free-form (task options, ask keyword arguments): a grid may add keys there.
_OPEN_SECTIONS = (("task", "options"), ("ask",))


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "lora.r", 8)``: set a nested key that must already exist (except in open sections)."""
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts):
        path = tuple(parts[:depth])
        is_open = path in _OPEN_SECTIONS
        if not isinstance(node, dict) or (part not in node and not is_open):
            valid = sorted(node) if isinstance(node, dict) else []
            where = ".".join(path) or "the experiment"
            raise ValueError(f"grid: unknown key {key!r}: {part!r} is not a key of {where}; valid keys are {valid}")
        if depth == len(parts) - 1:
            node[part] = copy.deepcopy(value)
        else:
            if part not in node:
                node[part] = {}
            node = node[part]


def point_label(overrides: dict[str, Any], default: str) -> str:
    """A short name for a point: ``lora.r=4 task.size=16``, or a task's name when the grid varies the task."""
    if not overrides:
        return default

    def short(v: Any) -> str:
        if isinstance(v, dict) and "name" in v:
            return f"{v['name']}" + (f"/{v['size']}" if "size" in v else "")
        if isinstance(v, list):
            return "+".join(short(x) for x in v)
        return str(v)

    return " ".join(short(v) if k == "task" else f"{k}={short(v)}" for k, v in overrides.items())


def load_experiment(name_or_path: str) -> Experiment:
    """A config by path, or by name from ``benchmarks/configs`` (``capacity`` -> ``configs/capacity.json``)."""
    p = Path(name_or_path)
    if not p.exists() and not p.suffix and (CONFIGS / f"{name_or_path}.json").exists():
        p = CONFIGS / f"{name_or_path}.json"
    return Experiment.from_file(p)


# --- the smoke profile -----------------------------------------------------------------------------------------

SMOKE_TASKS: dict[str, dict[str, Any]] = {
    "phonebook": {"name": "phonebook", "size": 6},
    "counterfact": {"name": "counterfact", "size": 4},
    "longdoc": {"name": "longdoc", "size": 2, "options": {"questions_per_level": 1, "doc_tokens": 300}},
}


def smoke_experiment(model: str | None = None) -> Experiment:
    """Every registered task x all six readers at tiny sizes, short training: checks the whole pipeline."""
    from .tasks import available_tasks

    known = available_tasks()
    order = [t for t in SMOKE_TASKS if t in known] + [t for t in known if t not in SMOKE_TASKS]
    tasks = [SMOKE_TASKS.get(t, {"name": t, "size": 4}) for t in order]
    return Experiment.from_dict({
        "name": "smoke",
        "model": model or "smollm2-135m",
        "task": tasks[0],
        "readers": list(ALL_READERS),
        "lora": {"r": 8},
        "train": {"max_steps": 40, "target_recall": 0.9, "min_epochs": 1, "seq_len": 128, "batch_tokens": 256,
                  "lr": 5e-3, "progress": False},
        "synth": {"qa_paraphrases": 1},
        "read": {"max_new_tokens": 16, "batch_size": 16, "progress": False},
        "rag": {"k": 2, "chunk_size": 64},
        "icl": {"token_budget": 384},
        "grid": {"task": tasks},
        "notes": "built-in smoke profile: every task x every reader at tiny sizes; checks results are valid",
    })


# --- measuring ---------------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    """This process's resident memory now, in MB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _maxrss_mb()


def _maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


class PeakRSS:
    """Peak resident memory (MB) while a block runs: VmRSS sampled every ``interval`` s by a background thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __enter__(self) -> PeakRSS:
        self.peak_mb = _rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> dict[str, Any]:
    """The commit this run measured and whether the working tree had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine_info(matmul_seconds: float = 0.5) -> dict[str, Any]:
    import torch

    from loramem.demo import measure_matmul

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "matmul_gflops": round(measure_matmul(seconds=matmul_seconds), 1),
    }


# --- scoring -----------------------------------------------------------------------------------------------------

# Metrics are in [0, 1] unless listed here (or named with a unit suffix, which only needs to be >= 0).
METRIC_RANGES: dict[str, tuple[float, float]] = {"judge_score": (0.0, 10.0)}
_UNBOUNDED_SUFFIXES = ("_tokens", "_s", "_count")


def metric_range(name: str) -> tuple[float, float]:
    if name in METRIC_RANGES:
        return METRIC_RANGES[name]
    if name.endswith(_UNBOUNDED_SUFFIXES):
        return (0.0, math.inf)
    return (0.0, 1.0)


def score_answer(task: Task, question: Question, answer: Answer) -> dict[str, float]:
    """Text metrics against the gold answers, then the task's own metrics (they win on a name clash)."""
    from .metrics import text_metrics

    metrics = {k: float(v) for k, v in text_metrics(answer.text, question.answers).items()}
    metrics.update({k: float(v) for k, v in task.score(question, answer).items()})
    return metrics


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def aggregate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every metric over the samples that have it, overall and per question kind."""

    def means(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
        names = sorted({k for r in rows for k in r["metrics"]})
        return {k: round(_mean([r["metrics"][k] for r in rows if k in r["metrics"]]), 4) for k in names}

    kinds = sorted({s["kind"] for s in samples})
    return {
        "n": len(samples),
        "metrics": means(samples),
        "by_kind": {k: {"n": sum(s["kind"] == k for s in samples), "metrics": means([s for s in samples if s["kind"] == k])}
                    for k in kinds},
    }


# --- the run -----------------------------------------------------------------------------------------------------


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` explicitly (a ``**kwargs`` catch-all does not count)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _limit(questions: list[Question], n: int | None) -> list[Question]:
    """The first ``n`` questions, taken round-robin over question kinds so every kind stays represented."""
    if n is None or n >= len(questions):
        return questions
    by_kind: dict[str, list[Question]] = {}
    for q in questions:
        by_kind.setdefault(q.kind, []).append(q)
    order = [q for batch in itertools.zip_longest(*by_kind.values()) for q in batch if q is not None]
    keep = {id(q) for q in order[:n]}
    return [q for q in questions if id(q) in keep]


def _write_record(reports: Sequence[Any]) -> dict[str, Any]:
    """The write cost of a point: one module's report, or the sum over a point's modules (recall item-weighted)."""
    items = sum(r.items_total for r in reports) or 1
    train_s = sum(r.timings.get("train", 0.0) for r in reports)
    tokens = sum(r.tokens_trained for r in reports)
    return {
        "modules": len(reports),
        "seconds": round(sum(r.seconds for r in reports), 3),
        "steps": sum(r.steps for r in reports),
        "tokens_trained": tokens,
        "knowledge_tokens": sum(r.knowledge_tokens for r in reports),
        "recall": round(sum(r.recall * r.items_total for r in reports) / items, 4),
        "reached_target": all(r.reached_target for r in reports),
        "trainable_params": sum(r.trainable_params for r in reports),
        "tokens_per_second": round(tokens / train_s, 1) if train_s > 0 else reports[0].tokens_per_second,
        "items": sum(r.items_total for r in reports),
        "examples": sum(r.examples for r in reports),
        "parts": [
            {"module_id": r.module_id, "seconds": round(r.seconds, 3), "steps": r.steps, "recall": r.recall,
             "items": r.items_total, "trainable_params": r.trainable_params, "timings": r.timings}
            for r in reports
        ],
    }


@dataclass
class RunOutput:
    """Where a run writes: ``results.json``, ``samples.jsonl`` and the scratch store."""

    out: Path

    @property
    def results(self) -> Path:
        return self.out / "results.json"

    @property
    def samples(self) -> Path:
        return self.out / "samples.jsonl"

    @property
    def store(self) -> Path:
        return self.out / "store"

    @property
    def judge_store(self) -> Path:
        return self.out / "store-judge"  # an empty store: only opened when the judge is another model

    def save(self, results: dict[str, Any]) -> None:
        tmp = self.results.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1, default=_jsonable) + "\n", encoding="utf-8")
        os.replace(tmp, self.results)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


class Runner:
    """Runs the points of one experiment on one loaded model. ``Runner(exp, out).run()`` -> the results dict."""

    def __init__(self, experiment: Experiment, out: str | os.PathLike[str], *, keep_store: bool = False,
                 say: Callable[[str], Any] | None = None) -> None:
        self.experiment = experiment
        self.output = RunOutput(Path(out))
        self.keep_store = keep_store
        self.say = say or _tqdm_write
        self.mem: KnowledgeMemory | None = None
        self.judge: Any = None
        self._judge_mem: KnowledgeMemory | None = None
        self.errors: list[str] = []

    def _open(self) -> KnowledgeMemory:
        from loramem import KnowledgeMemory, ModelConfig

        exp = self.experiment
        if self.output.store.exists():
            shutil.rmtree(self.output.store)  # a fresh store: points must not find items of an earlier run
        return KnowledgeMemory.open(self.output.store, model=ModelConfig(name=exp.model), lora=exp.lora,
                                    train=exp.train, synth=exp.synth, read=exp.read)

    def _open_judge(self, mem: KnowledgeMemory) -> dict[str, Any] | None:
        cfg = self.experiment.judge
        if cfg is None:
            return None
        from loramem import KnowledgeMemory, ModelConfig

        from .metrics import LLMJudge

        jmem = mem
        if cfg.model not in ("same", self.experiment.model):
            jmem = self._judge_mem = KnowledgeMemory.open(self.output.judge_store, model=ModelConfig(name=cfg.model))

        def llm(prompt: str) -> str:
            # The bare model judges (namespace=None: every module off), whatever the reader under test used.
            return jmem.chat([[{"role": "user", "content": prompt}]], namespace=None,
                             max_new_tokens=cfg.max_new_tokens)[0].text

        self.judge = LLMJudge(llm, name=jmem.model_config.name)
        return {"class": type(self.judge).__name__, "name": self.judge.name, "model": jmem.model_config.name,
                "max_new_tokens": cfg.max_new_tokens, "metric": "judge_score (0-10)"}

    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        exp = self.experiment
        points = exp.points()
        self.output.out.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()
        results: dict[str, Any] = {
            "name": exp.name,
            "config": exp.to_dict(),
            "status": "running",
            "command": sys.argv,
            "started": _now(),
            "finished": None,
            "seconds": None,
            "git": git_state(),
            "versions": package_versions(),
            "machine": machine_info(),
            "model": None,
            "judge": None,
            "points": [],
            "errors": self.errors,
            "samples": self.output.samples.name,
        }
        self.output.save(results)
        self.output.samples.write_text("", encoding="utf-8")
        mem = self.mem = self._open()
        try:
            t0 = time.perf_counter()
            mem.tokenizer  # noqa: B018  (loads the model now, so its load time is not charged to a reader)
            results["model"] = {"name": exp.model, "base_params": getattr(mem, "base_params", None),
                                "fingerprint": mem.fingerprint, "load_seconds": round(time.perf_counter() - t0, 3)}
            results["judge"] = self._open_judge(mem)
            self.say(f"{exp.name}: {len(points)} point(s) x {len(exp.readers)} reader(s) on {exp.model} "
                     f"-> {self.output.out}")
            for point in tqdm(points, desc=exp.name, unit="point", disable=len(points) < 2):
                try:
                    record = self.run_point(point)
                except Exception as exc:  # a failed point (a task that cannot build, a write that fails) is
                    traceback.print_exc()  # recorded, and the run goes on with the next point
                    record = {"index": point.index, "label": point.label, "namespace": point.namespace,
                              "overrides": point.overrides, "error": self._error(point, None, exc), "readers": {}}
                results["points"].append(record)
                results["seconds"] = round(time.perf_counter() - t_start, 3)
                results["ru_maxrss_mb"] = round(_maxrss_mb(), 1)
                self.output.save(results)
            results["status"] = "finished" if not self.errors else "finished with errors"
        except BaseException as exc:
            results["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc!r:.300}"
            raise
        finally:
            results["finished"] = _now()
            results["seconds"] = round(time.perf_counter() - t_start, 3)
            results["ru_maxrss_mb"] = round(_maxrss_mb(), 1)
            self.output.save(results)
            for m in {id(mem): mem, id(self._judge_mem): self._judge_mem}.values():
                if m is not None:
                    m.close()
            if not self.keep_store:
                shutil.rmtree(self.output.store, ignore_errors=True)
                shutil.rmtree(self.output.judge_store, ignore_errors=True)
        return results

    def _error(self, point: Point, reader: str | None, exc: Exception) -> str:
        msg = f"point {point.index} ({point.label})" + (f" reader {reader}" if reader else "")
        msg += f": {type(exc).__name__}: {exc}"
        self.errors.append(msg)
        self.say(f"  FAILED {msg}")
        return msg

    def run_point(self, point: Point) -> dict[str, Any]:
        """Build the task, write, index, then answer and score through every reader."""
        from .tasks import get_task

        exp, mem, ns = point.experiment, self.mem, point.namespace
        assert mem is not None
        t_point = time.perf_counter()
        mem.read_config = exp.read  # the grid may vary read settings per point
        task = get_task(exp.task.name)
        options = dict(exp.task.options)
        if _accepts(task.build, "tokenizer"):
            options["tokenizer"] = mem.tokenizer
        data = task.build(exp.task.size, exp.task.seed, **options)
        questions = _limit(data.questions, exp.limit)
        record: dict[str, Any] = {
            "index": point.index,
            "label": point.label,
            "namespace": ns,
            "overrides": point.overrides,
            "config": {k: v for k, v in exp.to_dict().items() if k not in ("grid", "notes", "name", "model")},
            "task": {"name": exp.task.name, "primary": task.primary, "size": exp.task.size, "seed": exp.task.seed,
                     "meta": data.meta, "items": len(data.items), "groups": len(data.groups),
                     "questions": len(questions), "questions_total": len(data.questions),
                     "kinds": sorted({q.kind for q in questions})},
            "write": None,
            "modules": {},
            "rag_index": None,
            "readers": {},
        }
        if any(r.startswith("lora") for r in exp.readers):
            record["write"], record["modules"] = self._write(exp, data, ns)
            w = record["write"]
            self.say(f"  {point.label}: wrote {w['items']} items -> {w['modules']} module(s): recall {w['recall']:.2f} "
                     f"after {w['steps']} steps, {w['seconds']:.1f}s, {w['trainable_params']:,} trainable params")
        rag_index = None
        if any("rag" in r for r in exp.readers):
            from loramem.readers import RAGIndex

            t0 = time.perf_counter()
            rag_index = RAGIndex.build(data.items, path=self.output.store / "rag" / ns, chunk_size=exp.rag.chunk_size)
            record["rag_index"] = {"seconds": round(time.perf_counter() - t0, 3), "chunks": len(rag_index)}
        for name in exp.readers:
            try:
                record["readers"][name] = self._run_reader(name, point, task, data, questions, rag_index, record)
            except Exception as exc:  # one broken reader must not lose the other readers' measurements
                traceback.print_exc()
                record["readers"][name] = {"error": self._error(point, name, exc), "n": 0}
        record["seconds"] = round(time.perf_counter() - t_point, 3)
        return record

    def _write(self, exp: Experiment, data: TaskData, ns: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Write the point's items: one module, or one per task group. Returns the cost and group -> module id."""
        mem = self.mem
        assert mem is not None
        kwargs: dict[str, Any] = {"lora": exp.lora, "train": exp.train, "synth": exp.synth}
        if exp.modules == "single":
            if _accepts(mem.write, "split"):
                kwargs["split"] = False  # a capacity measurement needs every item in the one module
            report = mem.write(data.items, namespace=ns, **kwargs)
            return _write_record([report]), {g: report.module_id for g in data.groups}
        reports, modules = [], {}
        for g in data.groups:
            report = mem.write(data.items_of(g), namespace=ns, module=f"{ns}-{g}", **kwargs)
            reports.append(report)
            modules[g] = report.module_id
        return _write_record(reports), modules

    def _routing(self, exp: Experiment, questions: list[Question], modules: dict[str, str],
                 routing: str | None = None) -> dict[str, Any]:
        """Keyword arguments that pick each question's module(s) for a LoRA reader (per_group modules only)."""
        routing = routing or exp.routing
        if exp.modules == "single":
            return {}
        if routing == "oracle":
            missing = sorted({str(q.group) for q in questions if q.group not in modules})
            if missing:
                raise ValueError(f"oracle routing: questions name groups that have no module: {missing[:5]}")
            return {"modules": [modules[str(q.group)] for q in questions]}
        return {"route": routing}

    def _run_reader(self, name: str, point: Point, task: Task, data: TaskData, questions: list[Question],
                    rag_index: Any, record: dict[str, Any]) -> dict[str, Any]:
        from loramem.readers import build_reader

        exp, mem = point.experiment, self.mem
        assert mem is not None
        lora = name.startswith("lora")
        base_name, _, routing = name.partition("@")
        t0 = time.perf_counter()
        reader = build_reader(base_name, mem, namespace=point.namespace if lora else None, items=data.items,
                              rag_index=rag_index, k=exp.rag.k, chunk_size=exp.rag.chunk_size,
                              token_budget=exp.icl.token_budget, max_new_tokens=exp.read.max_new_tokens)
        build_s = time.perf_counter() - t0
        routed = lora and exp.modules == "per_group"
        kwargs = {**exp.ask, **(self._routing(exp, questions, record["modules"], routing or None) if lora else {})}
        texts = [q.text for q in questions]
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            answers = reader.answer(texts, **kwargs)
            answer_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            logprobs = self._logprobs(reader, questions, answers, routed)
            score_s = time.perf_counter() - t0
        if len(answers) != len(questions):
            raise RuntimeError(f"reader {name} returned {len(answers)} answers for {len(questions)} questions")
        latency = answer_s / len(questions)
        samples = []
        for q, a, lp in zip(questions, answers, logprobs):
            metrics = score_answer(task, q, a)
            if lp is not None:
                metrics["lp_correct"] = float(lp[0] > max(lp[1:]))
            if routed and q.group in record["modules"]:
                metrics["route_correct"] = float(record["modules"][q.group] in a.modules)
            judged = None
            if self.judge is not None:
                judged = self.judge.score(q.text, q.answers[0], a.text)
                metrics["judge_score"] = float(judged["judge_score"])
            samples.append({
                "point": point.index, "label": point.label, "reader": name, "question_id": q.id, "kind": q.kind,
                "group": q.group, "question": q.text, "gold": q.answers, "answer": a.text, "metrics": metrics,
                "logprobs": lp, "candidates": q.candidates, "modules": a.modules, "sources": a.sources,
                "details": a.details, "usage": a.usage, "timings": a.timings, "latency_s": round(latency, 4),
                "judge": judged,
            })
        with self.output.samples.open("a", encoding="utf-8") as fh:
            for s in samples:
                fh.write(json.dumps(s, default=_jsonable) + "\n")
        dropped = [a.details["dropped_items"] for a in answers if "dropped_items" in a.details]
        setup_s = (record["write"]["seconds"] if lora and record["write"] else 0.0) + (
            record["rag_index"]["seconds"] if "rag" in name and record["rag_index"] else 0.0)
        summary = {
            **aggregate(samples),
            "latency_s": round(latency, 4),
            "answer_seconds": round(answer_s, 3),
            "score_seconds": round(score_s, 3),
            "build_seconds": round(build_s, 3),
            "setup_seconds": round(setup_s, 3),
            "peak_rss_mb": round(rss.peak_mb, 1),
            "input_tokens": round(_mean([a.usage.get("input_tokens", 0) for a in answers]), 1),
            "output_tokens": round(_mean([a.usage.get("output_tokens", 0) for a in answers]), 1),
            "dropped_items": round(_mean(dropped), 2) if dropped else None,
            "ask": {k: v for k, v in kwargs.items() if k != "modules"},
        }
        primary = summary["metrics"].get(task.primary, float("nan"))
        lp_note = f" lp_correct={summary['metrics']['lp_correct']:.2f}" if "lp_correct" in summary["metrics"] else ""
        self.say(f"  [{point.index + 1}] {point.label} | {name:<8} {task.primary}={primary:.3f}{lp_note} "
                 f"n={len(samples)} {latency:.3f}s/q rss={rss.peak_mb:.0f}MB")
        return summary

    def _logprobs(self, reader: Any, questions: list[Question], answers: list[Answer],
                  routed: bool) -> list[list[float] | None]:
        """Log-probability of each candidate (first token) for questions that have candidates, else None.

        With routed LoRA modules, each question is scored with the module(s) its answer used.
        """
        out: list[list[float] | None] = [None] * len(questions)
        idx = [i for i, q in enumerate(questions) if q.candidates]
        if not idx:
            return out
        kwargs: dict[str, Any] = {"reduce": "first"}
        if routed:
            kwargs["modules"] = [list(answers[i].modules) for i in idx]
        scores = reader.score([questions[i].text for i in idx], [questions[i].candidates for i in idx], **kwargs)
        for i, s in zip(idx, scores):
            out[i] = [float(x) for x in s]
        return out


def _tqdm_write(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text)


def run_experiment(experiment: Experiment, out: str | os.PathLike[str] | None = None, *,
                   keep_store: bool = False) -> dict[str, Any]:
    """Run every point; write ``results.json`` and ``samples.jsonl`` into ``out`` (default ``results/<name>``)."""
    return Runner(experiment, out or RESULTS / experiment.name, keep_store=keep_store).run()


# --- validation --------------------------------------------------------------------------------------------------


def _finite_in_range(name: str, value: Any, bounds: tuple[float, float] | None = None) -> str | None:
    lo, hi = bounds or metric_range(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return f"{name}={value!r} is not a finite number"
    if not lo <= value <= hi:
        return f"{name}={value} is outside [{lo}, {hi}]"
    return None


def validate_run(out: str | os.PathLike[str]) -> list[str]:
    """What is wrong with a run's outputs (empty when valid): files parse, every point x reader has samples,
    every metric is finite and in range, and the aggregates agree with the samples."""
    run = RunOutput(Path(out))
    problems: list[str] = []
    try:
        results = json.loads(run.results.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{run.results}: unreadable ({exc})"]
    try:
        lines = run.samples.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        return [f"{run.samples}: unreadable ({exc})"]
    samples: list[dict[str, Any]] = []
    for n, line in enumerate(lines, start=1):
        try:
            samples.append(json.loads(line))
        except json.JSONDecodeError as exc:
            return [f"{run.samples}:{n}: not valid JSON ({exc.msg})"]
    problems += [f"error: {e}" for e in results.get("errors", [])]
    if not str(results.get("status", "")).startswith("finished"):
        problems.append(f"status is {results.get('status')!r}, expected 'finished'")
    for key in ("config", "versions", "git", "machine", "started", "finished", "seconds"):
        if results.get(key) is None:
            problems.append(f"results.json lacks {key!r}")
    readers = results.get("config", {}).get("readers", [])
    expected_points = len(expand_grid(results.get("config", {}).get("grid", {})))
    if len(results.get("points", [])) != expected_points:
        problems.append(f"{len(results.get('points', []))} points measured, expected {expected_points}")
    counts: dict[tuple[int, str], int] = {}
    for s in samples:
        counts[(s["point"], s["reader"])] = counts.get((s["point"], s["reader"]), 0) + 1
        for name, value in s["metrics"].items():
            bad = _finite_in_range(name, value)
            if bad:
                problems.append(f"sample point {s['point']} {s['reader']} {s['question_id']}: {bad}")
    for p in results.get("points", []):
        where = f"point {p['index']} ({p['label']})"
        if "error" in p:
            continue  # listed with the errors above
        if p.get("write") is not None:
            for name, bounds in (("recall", (0.0, 1.0)), ("seconds", (0.0, math.inf))):
                bad = _finite_in_range(name, p["write"].get(name), bounds)
                if bad:
                    problems.append(f"{where} write: {bad}")
        for r in readers:
            agg = p.get("readers", {}).get(r)
            if agg is None:
                problems.append(f"{where}: reader {r} missing")
                continue
            if not agg.get("n"):
                problems.append(f"{where}: reader {r} has no samples")
                continue
            if counts.get((p["index"], r), 0) != agg["n"]:
                problems.append(f"{where}: reader {r} reports n={agg['n']} but samples.jsonl has "
                                f"{counts.get((p['index'], r), 0)}")
            if p["task"]["primary"] not in agg["metrics"]:
                problems.append(f"{where}: reader {r} lacks the primary metric {p['task']['primary']!r}")
            for name, value in agg["metrics"].items():
                bad = _finite_in_range(name, value)
                if bad:
                    problems.append(f"{where} {r}: {bad}")
            for name in ("latency_s", "peak_rss_mb"):
                bad = _finite_in_range(name, agg.get(name), (0.0, math.inf))
                if bad:
                    problems.append(f"{where} {r}: {bad}")
    return problems


def iter_results(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(run dir, results dict) for each run dir (or results.json path) given."""
    for p in map(Path, paths):
        f = p if p.is_file() else p / "results.json"
        if not f.exists() and not p.is_file() and (p / "capacity.json").exists():
            f = p / "capacity.json"  # a `loramem calibrate` output
        if not f.exists():
            raise ValueError(f"{p}: no results.json (expected a run folder written by `python -m benchmarks run`)")
        yield f.parent, json.loads(f.read_text(encoding="utf-8"))
