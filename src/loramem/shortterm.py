"""The facade's short-term memory: remember now, answer at once, consolidate into LoRA modules later.

``KnowledgeMemory`` inherits these calls; they delegate to ``buffer`` (remember, retrieval, consolidation),
``pending`` (the buffer's rows) and ``consolidator`` (the background thread). ``remember`` and ``pending`` take
none of the model's locks, so they never wait for a write. Layer 5.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from . import buffer, pending
from .consolidator import ConsolidationPolicy, Consolidator
from .locks import ModelLock, locked_write
from .pending import PendingItem
from .store import ModuleStore
from .types import WriteReport

if TYPE_CHECKING:
    from .runtime import Runtime


class ShortTermMemory:
    """``remember``, ``pending``, ``consolidate``, ``start_consolidator``, ``status`` of ``KnowledgeMemory``."""

    store: ModuleStore
    _lock: ModelLock
    _writer: threading.RLock
    _consolidator: Consolidator | None

    if TYPE_CHECKING:  # KnowledgeMemory's

        @property
        def rt(self) -> Runtime: ...

    def remember(self, items: buffer.ItemsArg, namespace: str = "default") -> list[str]:
        """Keep items in the namespace's short-term buffer, durably, in milliseconds (no training): ``ask``
        answers from them at once (the most similar ones put in the question's context, beside the modules)
        until ``consolidate`` (or a consolidator) trains them into modules. Strings become Documents. An item
        with the key of a pending one replaces it (``update``'s rule; ``metadata["key"]`` first). Returns the
        item ids. Takes none of the model's locks: it never waits for a write."""
        return buffer.remember(self.store, items, namespace)

    def pending(self, namespace: str | None = None) -> list[PendingItem]:
        """Items remembered and not consolidated yet, oldest first (every namespace's with None)."""
        return pending.items(self.store, namespace)

    @locked_write
    def consolidate(self, namespace: str | None = None) -> list[WriteReport]:
        """Train the pending items (of one namespace, or all) into modules, through the planner and the normal
        write path; each version's commit takes its items out of the buffer in the same transaction, so a crash
        leaves every item pending or consolidated. An item with the key of a held one is an ``update``."""
        return buffer.consolidate(self.rt, namespace)

    def start_consolidator(self, policy: ConsolidationPolicy | None = None) -> Consolidator:
        """Consolidate in the background by ``policy`` (count, tokens, age; see ``loramem.consolidator``).
        Reads go on meanwhile, answering with the committed versions plus the buffer. One per memory."""
        if self._consolidator is not None and self._consolidator.running:
            raise RuntimeError("this memory already runs a consolidator (stop() it first)")
        self._consolidator = Consolidator(policy or ConsolidationPolicy(), self.consolidate,
                                          lambda: pending.stats(self.store),
                                          lambda state, detail: pending.set_state(self.store, state, detail))
        return self._consolidator

    def status(self) -> dict[str, Any]:
        """The buffer per namespace (items, estimated tokens, oldest age), the consolidator (this process's, else
        the store's last heartbeat), and how often writes let reads in between steps."""
        worker = self._consolidator
        return {"pending": pending.stats(self.store),
                "consolidator": worker.status() if worker is not None else pending.get_state(self.store),
                "handovers": self._lock.handovers}
