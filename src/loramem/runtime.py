"""What the write, edit and query rooms share once the base model is loaded.

``Runtime`` bundles the store, the adapter pool over the one base model, the prompt builder (the same for
training and reading), the routers, the base model's identity and the memory's live ``Settings``. The facade
builds it on first use and hands it to ``writing``, ``edits`` and ``querying``; none of them sees the facade.
Layer 3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .adapters import AdapterPool
from .capacity import CapacityModel
from .config import ModelConfig, Settings
from .locks import ModelLock
from .prompts import PromptFormat
from .route import Routers
from .store import ModuleStore


@dataclass
class Runtime:
    store: ModuleStore
    pool: AdapterPool
    prompt: PromptFormat
    routers: Routers
    settings: Settings
    model_name: str  # as the user named it (an alias, a folder or a hub id)
    fingerprint: str  # of the base weights: modules are refused on any other base
    capacity: Callable[[], CapacityModel | None]  # the planner's capacity model (looked up lazily)
    base_params: int
    # The facade's lock over the one model: a write hands it to waiting reads between training steps.
    lock: ModelLock = field(default_factory=ModelLock)
    # Fingerprints a module may carry and still load here: this one, and loramem 0.1's rule at float32.
    accepted: frozenset[str] = frozenset()
    base: dict[str, Any] = field(default_factory=dict)  # models.base_record: recorded with every version
    model_config: ModelConfig | None = None  # None when opened with an in-memory model (no fan-out then)

    @classmethod
    def load(cls, store: ModuleStore, model: ModelConfig, given: tuple[Any, Any] | None, settings: Settings,
             routers: Routers, capacity: Callable[[], CapacityModel | None],
             lock: ModelLock | None = None) -> Runtime:
        """Load the base model (``model``, or the ``given`` (model, tokenizer) pair) and build the rooms' state."""
        from . import models

        base, tok = models.prepare(*given) if given is not None else models.load(model)
        fingerprint = models.fingerprint(base)
        accepted = frozenset({fingerprint, models.legacy_fingerprint(base)})
        from .devices import model_device

        if model_device(base).type != "cpu":
            from . import embed

            embed.use_device(str(model_device(base)))  # the embedder follows the base model's device
        pool = AdapterPool(base, store, fingerprint=fingerprint, accepted=accepted, model_name=model.name,
                           read=lambda: settings.read)
        return cls(store, pool, PromptFormat(tok, model.system_prompt), routers, settings, model.name, fingerprint,
                   capacity, models.count_params(base), lock or ModelLock(), accepted,
                   models.base_record(base, model.name), model if given is None else None)
