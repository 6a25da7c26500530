"""The experiment config: what one benchmark run measures, as validated data (a JSON file in ``configs/``).

An ``Experiment`` names a model, a ``kind`` of experiment and its settings:

- ``readers`` (the default): a task, the readers to compare and the write/read settings; its ``grid`` expands
  into points (the cartesian product of dotted-key overrides, e.g. ``{"lora.r": [2, 4]}``);
- ``modules``: many modules on one PhoneBook (equal budget against one big module and ICL, routing, merging,
  update/delete, mixed-batch read throughput); its own settings in ``options`` (``ModulesOptions``);
- ``write_throughput``: loramem's write loop against a plain ``transformers.Trainer`` + peft recipe, same
  examples, same steps (``WriteThroughputOptions``);
- ``natural_questions``: the shipped one-sentence memories written as documents and asked in a person's words
  (``NaturalQuestionsOptions``).
- ``short_term``: remember latency, and reads during a background consolidation (``ShortTermOptions``).

Every section is a dataclass validated in ``__post_init__`` ("<key>: expected X, got Y"); ``to_dict`` and
``from_dict`` round-trip through JSON. Nothing here loads a model.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loramem.config import MERGE_METHODS, LoraSpec, ReadConfig, SynthConfig, TrainConfig

CONFIGS = Path(__file__).resolve().parent / "configs"
ALL_READERS: tuple[str, ...] = ("base", "icl", "rag", "lora", "lora+rag", "lora+icl")
KINDS: tuple[str, ...] = ("readers", "modules", "write_throughput", "write_recipes", "incremental",
                          "natural_questions", "short_term")
# Grid keys that cannot vary inside one run: the model loads once, and the rest describe the run itself.
FIXED_KEYS = ("name", "model", "kind", "options", "grid", "judge", "notes")
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


# The parts of the ``modules`` experiment (benchmarks/experiments/modules.py), in the order they run.
MODULES_PARTS: tuple[str, ...] = ("budget", "throughput", "merging", "update_delete", "selection")


@dataclass
class ModulesOptions:
    """The ``modules`` experiment: ``modules`` modules of rank ``lora.r`` (one PhoneBook sector each) against one
    module of rank ``modules x lora.r``; ``changes`` entries deleted and as many updated; the merge methods
    tried; and how many times each side of the mixed-batch read-throughput comparison is timed. ``parts``: which
    parts run (all by default); ``selection`` reads with the embedding router's top-1, its top-``select_top_k``
    selected, and its top-``select_top_k`` merged with each of ``select_merge_methods``."""

    modules: int = 4
    changes: int = 2
    merge_methods: list[str] = field(default_factory=lambda: list(MERGE_METHODS))
    throughput_repeats: int = 5
    parts: list[str] = field(default_factory=lambda: list(MODULES_PARTS))
    select_top_k: int = 3
    select_merge_methods: list[str] = field(default_factory=lambda: ["ties", "cat"])

    def __post_init__(self) -> None:
        _expect(isinstance(self.modules, int) and self.modules >= 2, "modules", "an int >= 2", self.modules)
        _expect(isinstance(self.changes, int) and self.changes >= 0, "changes", "an int >= 0", self.changes)
        _expect(isinstance(self.merge_methods, list) and all(m in MERGE_METHODS for m in self.merge_methods),
                "merge_methods", f"a list of {list(MERGE_METHODS)}", self.merge_methods)
        _expect(isinstance(self.throughput_repeats, int) and self.throughput_repeats >= 1, "throughput_repeats",
                "an int >= 1", self.throughput_repeats)
        _expect(isinstance(self.parts, list) and len(self.parts) > 0 and all(p in MODULES_PARTS for p in self.parts)
                and len(set(self.parts)) == len(self.parts), "parts", f"a non-empty list of {list(MODULES_PARTS)}",
                self.parts)
        _expect(isinstance(self.select_top_k, int) and self.select_top_k >= 2, "select_top_k",
                "an int >= 2 (capped at modules when read)", self.select_top_k)
        _expect(isinstance(self.select_merge_methods, list) and all(m in MERGE_METHODS for m in self.select_merge_methods),
                "select_merge_methods", f"a list of {list(MERGE_METHODS)}", self.select_merge_methods)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModulesOptions:
        _check_keys(data, [f.name for f in dataclasses.fields(cls)])
        return cls(**data)


@dataclass
class WriteThroughputOptions:
    """The ``write_throughput`` experiment: ``steps`` optimizer steps of ``examples_per_step`` examples each,
    the same for loramem's loop and for the Trainer + peft baseline."""

    steps: int = 12
    examples_per_step: int = 24

    def __post_init__(self) -> None:
        _expect(isinstance(self.steps, int) and self.steps >= 1, "steps", "an int >= 1", self.steps)
        _expect(isinstance(self.examples_per_step, int) and self.examples_per_step >= 1, "examples_per_step",
                "an int >= 1", self.examples_per_step)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WriteThroughputOptions:
        _check_keys(data, [f.name for f in dataclasses.fields(cls)])
        return cls(**data)


@dataclass
class NaturalQuestionsOptions:
    """The ``natural_questions`` experiment: the first ``memories`` of the shipped set (``loramem.memories``; 0:
    all) written one Document each into one namespace, then asked the set's questions. ``target``: the share of
    those to answer (issue 11: 0.70). ``trained_phrasings``: also ask the wh-questions the synthesizer trained on
    (did the module memorise at all?); ``base``: also ask the bare model the set's questions."""

    memories: int = 0
    target: float = 0.7
    trained_phrasings: bool = True
    base: bool = True

    def __post_init__(self) -> None:
        from loramem.memories import load_memories

        shipped = len(load_memories())
        _expect(isinstance(self.memories, int) and not isinstance(self.memories, bool)
                and 0 <= self.memories <= shipped, "memories", f"an int in [0, {shipped}] (0: all)", self.memories)
        _expect(isinstance(self.target, (int, float)) and 0.0 <= self.target <= 1.0, "target", "a share in [0, 1]",
                self.target)
        for name in ("trained_phrasings", "base"):
            _expect(isinstance(getattr(self, name), bool), name, "a bool", getattr(self, name))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NaturalQuestionsOptions:
        _check_keys(data, [f.name for f in dataclasses.fields(cls)])
        return cls(**data)


@dataclass
class WriteRecipesOptions:
    """The ``write_recipes`` experiment: ``recipes`` maps a name to its overrides of the experiment's ``train``,
    ``lora`` and ``synth`` sections (``{"train": {...}, "lora": {...}, "synth": {...}}``, each optional); the
    first is the reference the others' ratios are taken against. Each writes ``repeats`` times, in rotation."""

    recipes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {"default": {}})
    repeats: int = 1

    def __post_init__(self) -> None:
        from loramem import LoraSpec, SynthConfig, TrainConfig

        _expect(isinstance(self.recipes, dict) and len(self.recipes) >= 1, "recipes",
                "a non-empty object of name -> overrides", self.recipes)
        sections: dict[str, Any] = {"train": TrainConfig, "lora": LoraSpec, "synth": SynthConfig}
        for name, over in self.recipes.items():
            _expect(isinstance(over, dict) and set(over) <= set(sections), f"recipes.{name}",
                    f"an object with any of {sorted(sections)}", over)
            for key, value in over.items():
                _expect(isinstance(value, dict), f"recipes.{name}.{key}", "an object of field -> value", value)
                sections[key].from_dict({**sections[key]().to_dict(), **value})  # raises on a bad field or value
        _expect(isinstance(self.repeats, int) and self.repeats >= 1, "repeats", "an int >= 1", self.repeats)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WriteRecipesOptions:
        _check_keys(data, [f.name for f in dataclasses.fields(cls)])
        return cls(**data)


@dataclass
class IncrementalOptions:
    """The ``incremental`` experiment: after one write of the ``task.size`` entries, one more entry is written
    into that module once per value of ``replays`` (``train.replay_items``; null = replay every held item),
    one after the other; then the same entries are written again into a fresh namespace as ``chunks`` writes
    of equal size, with the experiment's own ``train.replay_items``. ``lr_scales`` (one per add, or null: the
    experiment's ``train.warm_lr_scale``) sets each add's ``train.warm_lr_scale``."""

    replays: list[int | None] = field(default_factory=lambda: [0, 8, 16, 32, None])
    chunks: int = 10
    lr_scales: list[float] | None = None

    def __post_init__(self) -> None:
        _expect(isinstance(self.replays, list) and len(self.replays) >= 1
                and all(r is None or (isinstance(r, int) and r >= 0) for r in self.replays), "replays",
                "a non-empty list of ints >= 0 or null", self.replays)
        _expect(self.lr_scales is None or (isinstance(self.lr_scales, list) and len(self.lr_scales) == len(self.replays)
                and all(isinstance(x, (int, float)) and 0 < x <= 1 for x in self.lr_scales)), "lr_scales",
                f"null or a list of {len(self.replays)} floats in (0, 1], one per replay", self.lr_scales)
        _expect(isinstance(self.chunks, int) and self.chunks >= 0, "chunks", "an int >= 0 (0: no chunked writes)",
                self.chunks)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncrementalOptions:
        _check_keys(data, [f.name for f in dataclasses.fields(cls)])
        return cls(**data)


@dataclass
class ShortTermOptions:
    """The ``short_term`` experiment: ``remembers`` shipped memories remembered one at a time (``target_p95_s``:
    the p95 a remember must stay under, issue 12: 1 s); then ``initial`` PhoneBook entries written, ``idle_reads``
    asked idle, ``task.size`` more remembered and consolidated in the background with a question every
    ``read_every_s`` seconds, and ``after_reads`` once it committed."""

    remembers: int = 50
    target_p95_s: float = 1.0
    initial: int = 8
    idle_reads: int = 10
    read_every_s: float = 5.0
    after_reads: int = 10

    def __post_init__(self) -> None:
        from loramem.memories import load_memories

        shipped = len(load_memories())
        _expect(isinstance(self.remembers, int) and 1 <= self.remembers <= shipped, "remembers",
                f"an int in [1, {shipped}]", self.remembers)
        for name in ("initial", "idle_reads", "after_reads"):
            value = getattr(self, name)
            _expect(isinstance(value, int) and value >= 1, name, "an int >= 1", value)
        for name in ("target_p95_s", "read_every_s"):
            value = getattr(self, name)
            _expect(isinstance(value, (int, float)) and value > 0, name, "a number of seconds > 0", value)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShortTermOptions:
        _check_keys(data, [f.name for f in dataclasses.fields(cls)])
        return cls(**data)


OPTIONS: dict[str, Any] = {
    "readers": None, "modules": ModulesOptions, "write_throughput": WriteThroughputOptions,
    "write_recipes": WriteRecipesOptions, "incremental": IncrementalOptions,
    "natural_questions": NaturalQuestionsOptions, "short_term": ShortTermOptions,
}


@dataclass
class Experiment:
    """One benchmark run, as data (a JSON file in ``benchmarks/configs``). See the module docstring."""

    name: str
    model: str = "smollm2-135m"
    kind: Literal["readers", "modules", "write_throughput", "write_recipes", "incremental", "natural_questions",
                  "short_term"] = "readers"
    options: Any = None  # the kind's options dataclass (OPTIONS); nothing for "readers"
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
        _expect(self.kind in KINDS, "kind", f"one of {list(KINDS)}", self.kind)
        options_cls = OPTIONS[self.kind]
        if options_cls is None:
            _expect(self.options in (None, {}), "options", f"nothing for kind {self.kind!r}", self.options)
            self.options = None
        else:
            self.options = _section("options", options_cls, {} if self.options is None else self.options)
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
            # of per_group modules (a plain "lora" uses the experiment's `routing`); "lora+rag@gate": a hybrid
            # that gates closed-book against the context instead of stacking them (both: "lora+rag@embedding@gate").
            base, route, combine = parse_reader(r)
            _expect(base in READERS, "readers", f"each one of {sorted(READERS)} (optionally @<routing>, @gate)", r)
            if route:
                _expect(base.startswith("lora") and self.modules == "per_group", "readers",
                        "@<routing> only on lora readers with modules 'per_group'", r)
                _expect(route in routers, "readers", f"@<routing> with routing one of {routers}, or @gate", r)
            if combine:
                _expect("+" in base, "readers", "@gate only on a hybrid reader (lora+rag, lora+icl)", r)
        _expect(len(set(self.readers)) == len(self.readers), "readers", "no duplicates", self.readers)
        _expect(self.modules in ("single", "per_group"), "modules", "'single' or 'per_group'", self.modules)
        _expect(self.routing in routers, "routing", f"one of {routers}", self.routing)
        _expect(isinstance(self.ask, dict), "ask", "a JSON object (keyword arguments of reader.answer)", self.ask)
        _expect(self.limit is None or (isinstance(self.limit, int) and self.limit >= 1), "limit",
                "null or an int >= 1 (questions per point)", self.limit)
        _expect(isinstance(self.notes, str), "notes", "a string", self.notes)
        _expect(isinstance(self.grid, dict), "grid", "a JSON object of dotted key -> list of values", self.grid)
        if self.kind != "readers":
            self._check_kind()
        if self.grid:
            self.points()  # every point must be a valid experiment: fail now, not hours into the run

    def _check_kind(self) -> None:
        """What the ``modules``, ``write_throughput`` and ``natural_questions`` experiments need of the shared
        sections."""
        _expect(not self.grid, "grid", f"nothing for kind {self.kind!r} (one measurement per run)", self.grid)
        _expect(self.judge is None, "judge", f"null for kind {self.kind!r}", self.judge)
        defaults = Experiment(name="defaults")
        for key in ("readers", "rag", "modules", "routing", "ask", "limit"):
            _expect(getattr(self, key) == getattr(defaults, key), key,
                    f"the default for kind {self.kind!r}, which does not use it (leave it out)", getattr(self, key))
        if isinstance(self.options, NaturalQuestionsOptions):
            _expect(self.task == TaskSpec(), "task", f"the default for kind {self.kind!r}, which writes the shipped "
                    "memories (leave it out; options.memories says how many)", dataclasses.asdict(self.task))
            return
        _expect(self.task.name == "phonebook", "task", f"the phonebook task for kind {self.kind!r}", self.task.name)
        if isinstance(self.options, ModulesOptions):
            k = self.options.modules
            _expect(self.task.size >= 2 * k, "task", f"size >= 2 x options.modules ({2 * k}) entries",
                    self.task.size)
            _expect(self.options.changes <= self.task.size // k, "options", f"changes <= entries per module "
                    f"({self.task.size // k})", self.options.changes)
        else:
            _expect(self.task.size >= 1, "task", "size >= 1 entries", self.task.size)

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
            "kind": self.kind,
            "options": dataclasses.asdict(self.options) if self.options is not None else None,
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


def parse_reader(name: str) -> tuple[str, str | None, str | None]:
    """``"lora+rag@embedding@gate"`` -> (registered reader, routing or None, combine or None); ``@stack`` and
    ``@gate`` name the combine rule (a plain hybrid uses the readers' default, the gate)."""
    base, *suffixes = name.split("@")
    modes = [s for s in suffixes if s in ("gate", "stack")]
    combine = modes[0] if modes else None
    routes = [s for s in suffixes if s not in ("gate", "stack")]
    _expect(len(routes) <= 1 and len(modes) <= 1, "readers", "at most one @<routing> and one @gate", name)
    return base, (routes[0] if routes else None), combine


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
