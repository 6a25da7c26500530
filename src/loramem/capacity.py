"""How much knowledge a LoRA module holds: a capacity model per base model and rank, fitted from a sweep.

The paper's finding: every rank saturates at a finite knowledge size, absolute capacity grows with rank, and
knowledge per trainable parameter peaks at low rank. ``loramem.calibration.calibrate`` measures it on a PhoneBook sweep with the
same write loop users run (knowledge tokens = answer tokens of the training data, what ``ls`` reports), and
``CapacityModel`` answers two questions for the planner: how many knowledge tokens does a rank-r module hold
at the target recall, and which rank stores the most per parameter.

A store uses ``<store>/capacity.json`` when it was calibrated for its base model, else the default shipped
for the embedded model (``loramem/data/capacity/<alias>.json``), else no model (no automatic splitting).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).parent / "data" / "capacity"
DEFAULT_RANKS = (2, 4, 8, 16, 32, 64)
DEFAULT_SIZES = (4, 8, 16, 32, 64, 128)


@dataclass
class CapacityModel:
    """Measured points and the per-rank saturation (knowledge tokens held at ``threshold`` recall)."""

    base_model: str
    base_fingerprint: str | None
    threshold: float
    points: list[dict[str, Any]]
    train: dict[str, Any] = field(default_factory=dict)
    command: str = ""

    # --- what the planner asks -------------------------------------------------------------------------------

    def saturation(self) -> dict[int, int]:
        """Rank -> largest knowledge size (tokens) recalled at >= threshold (0: none was)."""
        out: dict[int, int] = {}
        for p in self.points:
            r = int(p["r"])
            out.setdefault(r, 0)
            if p["recall"] >= self.threshold:
                out[r] = max(out[r], int(p["knowledge_tokens"]))
        return dict(sorted(out.items()))

    def bounded(self) -> dict[int, bool]:
        """Rank -> whether a size above its saturation failed (True: measured; False: only a lower bound,
        every size tried was held, so the rank may hold more)."""
        sat = self.saturation()
        return {r: any(int(p["r"]) == r and p["recall"] < self.threshold and p["knowledge_tokens"] > t
                       for p in self.points) for r, t in sat.items()}

    def params(self) -> dict[int, int]:
        return {int(p["r"]): int(p["trainable_params"]) for p in self.points}

    def efficiency(self) -> dict[int, float]:
        """Rank -> knowledge tokens held per trainable parameter (the paper's T_max / N_params)."""
        sat, params = self.saturation(), self.params()
        return {r: sat[r] / params[r] for r in sat if params.get(r)}

    def fit(self) -> tuple[float, float] | None:
        """Least squares of log(capacity) = log(a) + b log(r) over ranks that held anything; None if < 2."""
        pts = [(math.log(r), math.log(t)) for r, t in self.saturation().items() if t > 0]
        if len(pts) < 2:
            return None
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        var = sum((x - mx) ** 2 for x, _ in pts)
        b = sum((x - mx) * (y - my) for x, y in pts) / var if var else 0.0
        return math.exp(my - b * mx), b

    def capacity(self, r: int) -> int:
        """Knowledge tokens a rank-``r`` module holds: measured when calibrated at ``r``, else the power-law fit."""
        sat = self.saturation()
        if r in sat:
            return sat[r]  # measured (0 when that rank held none of the sizes tried)
        fitted = self.fit()
        if fitted is None:
            return max(sat.values(), default=0)
        a, b = fitted
        return int(a * r**b)

    def best_rank(self) -> int:
        """The calibrated rank with the most knowledge per parameter."""
        eff = self.efficiency()
        if not eff or max(eff.values()) <= 0:
            raise ValueError("capacity model has no rank that held anything at the threshold; calibrate with smaller sizes")
        return max(eff, key=lambda r: (eff[r], -r))

    def plan(self, tokens: int, fill: float = 0.8) -> tuple[int, int]:
        """(rank, modules) for ``tokens`` knowledge tokens, each module filled to at most ``fill`` of capacity.

        What fits in one module gets the smallest rank that holds it; more gets the most efficient rank, split
        across as many modules as it takes (the paper: several small modules beat one large one).
        """
        if tokens < 0 or not 0 < fill <= 1:
            raise ValueError(f"expected tokens >= 0 and 0 < fill <= 1, got tokens={tokens}, fill={fill}")
        best = self.best_rank()
        for r in sorted(self.saturation()):
            if r <= best and self.capacity(r) * fill >= tokens:
                return r, 1
        per_module = max(1, int(self.capacity(best) * fill))
        return best, max(1, math.ceil(tokens / per_module))

    # --- persistence -----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["saturation"] = {str(r): t for r, t in self.saturation().items()}
        out["efficiency"] = {str(r): e for r, e in self.efficiency().items()}
        out["saturation_is_upper_bound"] = {str(r): b for r, b in self.bounded().items()}
        fitted = self.fit()
        out["fit"] = None if fitted is None else {"a": fitted[0], "b": fitted[1], "form": "tokens = a * r**b"}
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CapacityModel:
        return cls.load_dict(json.loads(Path(path).read_text()), str(path))

    @classmethod
    def load_dict(cls, data: dict[str, Any], source: str = "capacity model") -> CapacityModel:
        fields = {k: data[k] for k in ("base_model", "base_fingerprint", "threshold", "points", "train", "command") if k in data}
        missing = {"base_model", "threshold", "points"} - set(fields)
        if missing:
            raise ValueError(f"{source}: not a capacity model (missing {sorted(missing)})")
        fields.setdefault("base_fingerprint", None)
        return cls(**fields)

    @classmethod
    def shipped(cls, alias: str) -> CapacityModel | None:
        path = SHIPPED / f"{alias}.json"
        return cls.load(path) if path.exists() else None

    @classmethod
    def for_store(cls, root: str | os.PathLike[str], base_model: str) -> CapacityModel | None:
        """The store's own calibration for ``base_model``, else the shipped one (no weights loaded: by name)."""
        local = Path(root) / "capacity.json"
        if local.exists():
            cm = cls.load(local)
            if cm.base_model == base_model:
                return cm
        return cls.shipped(base_model)

    @classmethod
    def find(cls, root: str | os.PathLike[str], base_model: str,
             fingerprint: str | Collection[str]) -> CapacityModel | None:
        """The model the planner uses: ``<root>/capacity.json`` if calibrated for this base model (by
        fingerprint: one, or the several a base answers to), else the one shipped for ``base_model``, else None."""
        accepted = {fingerprint} if isinstance(fingerprint, str) else set(fingerprint)
        local = Path(root) / "capacity.json"
        candidates = [cls.load(local)] if local.exists() else []
        shipped = cls.shipped(base_model)
        candidates += [shipped] if shipped is not None else []
        return next((cm for cm in candidates if cm.base_fingerprint is None or cm.base_fingerprint in accepted), None)
