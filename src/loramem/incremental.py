"""Incremental writes: the rounds of one write into a module that already holds items, and the warning a
version below its target commits with. Layer 4 (used by ``writing``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from .config import TrainConfig
from .runtime import Runtime
from .types import Example


class Incremental:
    """The rounds of one incremental write: new items plus a bounded replay sample, then repairs of what slipped.

    Round 1 trains on the new items' examples and the examples of ``replay_items`` held items sampled at random
    (all of them when ``replay_items`` is None, the module is new, or ``bounded`` is False, as for a rebuild from
    fresh weights: then round 1 is the whole set and nothing else runs). After it, every held item is checked once (teacher-forced probes,
    one pass); while recall is below the target and ``repair_rounds`` are left, another round trains on the
    items that slipped, the new items and a fresh replay sample. If the repairs leave items below the target (on
    a small model, a few items can trade places round after round), ``full_fallback`` adds one last round on
    every item, the full write's data. Training is warm (from the previous version), so a small write into a big
    module costs what the new items and the sample cost, not the whole module.
    """

    def __init__(self, rt: Runtime, tcfg: TrainConfig, held: set[str], examples: list[Example],
                 new_examples: list[Example], *, bounded: bool) -> None:
        import random

        self.rt, self.tcfg, self.examples = rt, tcfg, examples
        self.held = sorted(held)
        self.new_ids = {e.item_id for e in new_examples}
        # Seeded by what the version holds, not by the module id (random per store): the same write into the
        # same items replays the same sample, so the same seed gives the same module.
        self.rng = random.Random(f"{tcfg.seed}:replay:{','.join(self.held)}:{','.join(sorted(self.new_ids))}")
        n = tcfg.replay_items
        self.bounded = bounded and n is not None and len(self.held) > n
        self.rounds = 0
        self.fell_back = False
        self.slipped: list[str] = []
        self.replayed = len(self.held)
        self.check_s = 0.0
        self.recall: float | None = None

    def _round(self, extra: Sequence[str] = ()) -> list[Example]:
        n = self.tcfg.replay_items
        sample = set(self.rng.sample(self.held, n)) if self.bounded and n is not None else set(self.held)
        keep = self.new_ids | sample | set(extra)
        return [e for e in self.examples if e.item_id in keep]

    def first_round(self) -> list[Example]:
        if self.bounded and self.tcfg.replay_items is not None:
            self.replayed = self.tcfg.replay_items
        return self._round()

    def next_round(self, model: Any, result: Any) -> list[Example]:
        """After a round: check every item the version holds; the examples of a repair round, or [] to stop."""
        if not self.bounded:
            everything = {*self.held, *self.new_ids}  # round 1 trained (and checked) every item
            self.slipped = sorted(everything - result.recalled) if not result.reached_target else []
            return []
        from .train import encode_all, exact_recall

        t0 = time.perf_counter()
        probes = [e for e in self.examples if e.probe]
        pad = self.rt.prompt.tokenizer.pad_token_id
        hits = exact_recall(model, encode_all(probes, self.rt.prompt, self.tcfg.seq_len), self.tcfg.seq_len,
                            self.tcfg.batch_tokens, pad if pad is not None else 0)
        self.check_s += time.perf_counter() - t0
        self.recall = sum(hits) / len(hits) if hits else 1.0
        result.recall, result.reached_target = self.recall, self.recall >= self.tcfg.target_recall
        self.slipped = sorted({e.item_id for e, hit in zip(probes, hits) if not hit})
        if result.reached_target or self.fell_back:
            return []
        if self.rounds >= self.tcfg.repair_rounds:
            if not self.tcfg.full_fallback:
                return []
            self.fell_back = True
            return list(self.examples)
        self.rounds += 1
        return self._round(self.slipped)

    def round_config(self, config: TrainConfig) -> TrainConfig:
        """The config of the round about to train: a bounded round's learning rate is ``lr x warm_lr_scale``;
        the full fallback round (and every unbounded write) keeps ``lr``."""
        scale = config.warm_lr_scale
        if not self.bounded or self.fell_back or scale == 1.0:
            return config
        return dataclasses.replace(config, lr=config.lr * scale)

    def summary(self) -> dict[str, Any]:
        return {"held": len(self.held), "replayed": self.replayed, "bounded": self.bounded,
                "lr_scale": self.tcfg.warm_lr_scale if self.bounded else 1.0,
                "repair_rounds": self.rounds, "full_round": self.fell_back, "slipped": len(self.slipped),
                "check_seconds": round(self.check_s, 3)}


def warn_below_target(module_id: str, recall: float, target: float, slipped: Sequence[str]) -> None:
    """A version below its target still commits (the items are in the store either way), but never silently."""
    import warnings

    names = ", ".join(slipped[:10]) + (f" and {len(slipped) - 10} more" if len(slipped) > 10 else "")
    warnings.warn(f"module {module_id}: recall {recall:.1%} is below target_recall {target:.0%}; "
                  f"not recalled: {names or 'none listed'} (WriteReport.slipped; write them again, or raise "
                  f"max_steps / repair_rounds)", RuntimeWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The stacklevel of the first frame outside loramem (write, update, consolidate reach here at different
    depths), so the warning names the user's line."""
    import os
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level
