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
    fresh weights: then round 1 is the whole set and nothing else runs). A bounded round is short: it trains at
    ``lr x warm_lr_scale`` for at least ``min(min_epochs, warm_min_epochs)`` passes, until its new (and slipped)
    items are recalled; the replayed ones are trained, not probed, during the round.

    After it, every held item is checked once (teacher-forced probes, one pass) and judged against the version
    the write started from: an item *slipped* when that version recalled it and this one does not, and a new
    item slipped when it is not recalled. What the previous version recalled comes from its commit (``missed``
    in its report), or from one check of it before round 1 for versions written before that field. The round
    is kept when the new items are learnt (a ``target_recall`` share of them) and recall >= ``target_recall``
    or no held item slipped (items the module never recalled are not this write's to repair: a bounded write
    does not pay for them). Otherwise another round trains on the slipped
    items, the new items and a fresh replay sample, up to ``repair_rounds``; if items still slip (on a small
    model, a few can trade places round after round), ``full_fallback`` adds one last round on every item, the
    full write's data. Training is warm (from the previous version), so a small write into a big module costs
    what the new items and the sample cost, not the whole module.
    """

    def __init__(self, rt: Runtime, tcfg: TrainConfig, held: set[str], examples: list[Example],
                 new_examples: list[Example], *, bounded: bool, missed_before: Sequence[str] | None = None) -> None:
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
        self.missed: list[str] = []  # every item this version does not recall, at its last check (the commit keeps it)
        # Items the starting version recalls: None until known (its commit's record, or baseline()).
        self.before: set[str] | None = set(held) - set(missed_before) if missed_before is not None else None
        self.checks: list[dict[str, Any]] = []
        self.replayed = len(self.held)
        self.check_s = 0.0
        self.recall: float | None = None

    def _round(self, extra: Sequence[str] = ()) -> list[Example]:
        """The new items, ``extra`` (what slipped) and a fresh replay sample. Only the first two are probed during
        the round: the round stops once they are recalled, not once most of its items are (32 replayed items
        could carry a round past a new item it never learnt); the full check after it covers the rest."""
        n = self.tcfg.replay_items
        if not self.bounded or n is None:
            return list(self.examples)  # a full round: every item trained and probed
        sample = set(self.rng.sample(self.held, n))
        focus = self.new_ids | set(extra)
        keep = focus | sample
        return [e if e.item_id in focus or not e.probe else dataclasses.replace(e, probe=False)
                for e in self.examples if e.item_id in keep]

    def first_round(self) -> list[Example]:
        if self.bounded and self.tcfg.replay_items is not None:
            self.replayed = self.tcfg.replay_items
        return self._round()

    def _check(self, model: Any, probes: list[Example]) -> tuple[set[str], float]:
        """One teacher-forced pass over ``probes``: the ids of the items with a probe not recalled, and the
        share of probes recalled."""
        from .train import encode_all, exact_recall

        t0 = time.perf_counter()
        pad = self.rt.prompt.tokenizer.pad_token_id
        hits = exact_recall(model, encode_all(probes, self.rt.prompt, self.tcfg.seq_len), self.tcfg.seq_len,
                            self.tcfg.batch_tokens, pad if pad is not None else 0)
        self.check_s += time.perf_counter() - t0
        return {e.item_id for e, hit in zip(probes, hits) if not hit}, sum(hits) / len(hits) if hits else 1.0

    def baseline(self, model: Any) -> None:
        """Before round 1, with the starting version loaded: which held items it recalls, when its commit did
        not record that (versions older than the ``missed`` field). Nothing to do for an unbounded write."""
        if self.bounded and self.before is None:
            held = set(self.held)
            missed, _ = self._check(model, [e for e in self.examples if e.probe and e.item_id in held])
            self.before = held - missed
            self.checks.append({"round": "before", "recall": round(len(self.before) / max(1, len(held)), 4)})

    def next_round(self, model: Any, result: Any) -> list[Example]:
        """After a round: check every item the version holds; the examples of a repair round, or [] to stop."""
        if not self.bounded:
            everything = {*self.held, *self.new_ids}  # round 1 trained (and checked) every item
            self.missed = sorted(everything - result.recalled)
            self.slipped = self.missed if not result.reached_target else []
            return []
        missed, self.recall = self._check(model, [e for e in self.examples if e.probe])
        self.missed = sorted(missed)
        known = self.before if self.before is not None else set(self.held)
        lost, unlearnt = missed & known, missed & self.new_ids
        self.slipped = sorted(lost | unlearnt)
        result.recall, result.reached_target = self.recall, self.recall >= self.tcfg.target_recall
        learnt = len(self.new_ids) - len(unlearnt) >= self.tcfg.target_recall * len(self.new_ids)
        self.checks.append({"round": "full" if self.fell_back else self.rounds + 1, "recall": round(self.recall, 4),
                            "slipped": len(self.slipped), "new_missed": len(unlearnt), "missed": len(self.missed)})
        if (learnt and (result.reached_target or not lost)) or self.fell_back:
            return []
        if self.rounds >= self.tcfg.repair_rounds:
            if not self.tcfg.full_fallback:
                return []
            self.fell_back = True
            return list(self.examples)
        self.rounds += 1
        return self._round(self.slipped)

    def round_config(self, config: TrainConfig) -> TrainConfig:
        """The config of the round about to train: a bounded round trains at ``lr x warm_lr_scale`` for at least
        ``min(min_epochs, warm_min_epochs)`` passes; the full fallback round (and every unbounded write) keeps
        the config as given."""
        if not self.bounded or self.fell_back:
            return config
        return dataclasses.replace(config, lr=config.lr * config.warm_lr_scale,
                                   min_epochs=min(config.min_epochs, config.warm_min_epochs))

    def summary(self) -> dict[str, Any]:
        return {"held": len(self.held), "replayed": self.replayed, "bounded": self.bounded,
                "lr_scale": self.tcfg.warm_lr_scale if self.bounded else 1.0,
                "repair_rounds": self.rounds, "full_round": self.fell_back, "slipped": len(self.slipped),
                "missed": len(self.missed), "check_seconds": round(self.check_s, 3),
                **({"checks": self.checks} if self.checks else {})}


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
