"""The kinds of experiment the runner runs (``Experiment.kind``), each a function ``run(runner, results)`` that
measures on ``runner.mem``, appends to ``samples.jsonl`` (``runner.output.append``) and saves ``results.json``
(``runner.save``) as it goes:

- ``readers``: readers compared on one task, per grid point (``readers.py``);
- ``modules``: many modules on one PhoneBook: equal budget, routing, throughput, merging, update/delete;
- ``write_throughput``: loramem's write loop against a plain Trainer + peft recipe;
- ``natural_questions``: the shipped one-sentence memories, asked in a person's words;
- ``short_term``: remember latency, and reads while a consolidator trains (``short_term.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..config import KINDS


def get_experiment(kind: str) -> Callable[[Any, dict[str, Any]], None]:
    """The ``run`` function of an experiment kind; an unknown kind raises an error listing the valid ones."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {list(KINDS)}, got {kind!r}")
    module = importlib.import_module(f"{__name__}.{kind}")
    run: Callable[[Any, dict[str, Any]], None] = module.run
    return run
