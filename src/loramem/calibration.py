"""Calibration: measure how much a LoRA module of each rank holds, with the write loop users run.

``calibrate(memory)`` writes PhoneBooks of each size at each rank into fresh modules and records recall; the
result is a ``CapacityModel`` (``loramem.capacity``) that the planner uses. ``loramem calibrate`` runs it from a
shell and stores ``<store>/capacity.json``. Layer 6: over the facade.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .capacity import DEFAULT_RANKS, DEFAULT_SIZES, CapacityModel
from .config import LoraSpec, SynthConfig, TrainConfig

if TYPE_CHECKING:
    from .memory import KnowledgeMemory


def calibrate(
    memory: KnowledgeMemory,
    *,
    ranks: Sequence[int] = DEFAULT_RANKS,
    sizes: Sequence[int] = DEFAULT_SIZES,
    train: TrainConfig | None = None,
    lora: LoraSpec | None = None,
    threshold: float = 0.9,
    seed: int = 0,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    order: str = "size",
    checkpoint: str | os.PathLike[str] | None = None,
    command: str = "",
) -> CapacityModel:
    """Write PhoneBooks of each size at each rank (fresh modules, same write loop as users) and record recall.

    ``train`` should carry the step budget that writes will use: capacity is what a module holds within it.
    Each point's module is dropped after measuring, so the store is left as it was.
    """
    from .phonebook import phonebook

    if not ranks or not sizes:
        raise ValueError(f"expected at least one rank and one size, got ranks={ranks}, sizes={sizes}")
    tcfg = train or memory.train_config
    base_spec = lora or memory.lora
    synth = SynthConfig(formats=("qa",), qa_paraphrases=1)
    if order not in ("size", "rank"):
        raise ValueError(f"order: expected 'size' or 'rank', got {order!r}")
    grid = [(r, n) for n in sizes for r in ranks] if order == "size" else [(r, n) for r in ranks for n in sizes]
    points: list[dict[str, Any]] = []
    if checkpoint is not None and Path(checkpoint).exists():
        # Resume an interrupted sweep: points measured with the same training budget are kept.
        previous = CapacityModel.load(checkpoint)
        if previous.train == tcfg.to_dict() and previous.base_fingerprint in memory.rt.accepted:
            points = [p for p in previous.points if (p["r"], p["entries"]) in set(grid)]
    done = {(p["r"], p["entries"]) for p in points}

    def model() -> CapacityModel:
        return CapacityModel(base_model=memory.model_config.name, base_fingerprint=memory.fingerprint,
                             threshold=threshold, points=list(points), train=tcfg.to_dict(), command=command)

    for r, n in grid:
        if (r, n) in done:
            continue
        spec = LoraSpec.from_dict({**base_spec.to_dict(), "r": int(r)})
        namespace = f"_calibrate-r{r}-n{n}"
        if namespace in memory.namespaces():
            memory.forget_namespace(namespace)
        t0 = time.perf_counter()
        report = memory.write(phonebook(n, seed=seed), namespace=namespace, lora=spec, train=tcfg, synth=synth,
                              split=False)
        point = {
            "r": int(r), "entries": int(n), "knowledge_tokens": report.knowledge_tokens,
            "trainable_params": report.trainable_params, "recall": round(report.recall, 4),
            "steps": report.steps, "tokens_trained": report.tokens_trained,
            "reached_target": report.reached_target, "seconds": round(time.perf_counter() - t0, 2),
        }
        points.append(point)
        memory.forget_namespace(namespace)
        if on_point is not None:
            on_point(point)
        if checkpoint is not None:
            model().save(checkpoint)  # an interrupted sweep keeps what it measured
    return model()
