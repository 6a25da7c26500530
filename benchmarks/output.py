"""What a run leaves on disk: ``results.json`` (rewritten atomically after every step) and ``samples.jsonl``
(one row per answer or measurement, appended), and reading them back for ``report``."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def jsonable(value: Any) -> Any:
    """``json.dumps(default=...)``: dataclasses as dicts, sets and tuples as lists, anything else as its str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


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

    def start(self) -> None:
        """An empty ``samples.jsonl`` in a (new) output folder."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.samples.write_text("", encoding="utf-8")

    def save(self, results: dict[str, Any]) -> None:
        """Rewrite ``results.json`` atomically: a reader never sees half a file, an interrupted run keeps the last."""
        tmp = self.results.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1, default=jsonable) + "\n", encoding="utf-8")
        os.replace(tmp, self.results)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.samples.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, default=jsonable) + "\n")


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Every row of a ``samples.jsonl``; a line that is not JSON raises ``ValueError`` naming it."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    return rows


def iter_results(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(run dir, results dict) for each run dir (or results.json path) given."""
    for p in map(Path, paths):
        f = p if p.is_file() else p / "results.json"
        if not f.exists() and not p.is_file() and (p / "capacity.json").exists():
            f = p / "capacity.json"  # a `loramem calibrate` output
        if not f.exists():
            raise ValueError(f"{p}: no results.json (expected a run folder written by `python -m benchmarks run`)")
        yield f.parent, json.loads(f.read_text(encoding="utf-8"))
