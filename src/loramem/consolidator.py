"""The background consolidator: moves the short-term buffer into LoRA modules by policy, on a thread.

    policy = ConsolidationPolicy(max_items=16, max_age_s=300)
    worker = mem.start_consolidator(policy)   # reads go on answering (committed versions + the buffer)
    worker.flush()                             # consolidate everything pending now, wait, return the reports
    worker.stop()                              # stop after the write in flight (pending items stay pending)
    worker.close()                             # flush, then stop

A namespace is due when its pending items reach ``max_items`` or ``max_tokens`` (estimated) or its oldest item
``max_age_s``; with all three None only ``flush()`` (or ``mem.consolidate()``) consolidates. A failed
consolidation is logged with its traceback (logger ``loramem``), kept in ``status()`` and retried after
``retry_s``, doubling up to ``retry_max_s``; ``flush()`` raises it. Nothing is swallowed. Layer 4: the thread
calls what it is given (the facade's locked consolidate), never the facade itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import _Config, _expect, _help
from .types import WriteReport

log = logging.getLogger("loramem")


class ConsolidationError(RuntimeError):
    """A consolidation failed (``__cause__`` is why); its items stay pending and are retried."""


@dataclass
class ConsolidationPolicy(_Config):
    max_items: int | None = _help("Consolidate a namespace once this many items are pending (None: no count "
                                  "trigger).", default=16)
    max_tokens: int | None = _help("... or once its pending items reach this many (estimated) tokens.",
                                   default=None)
    max_age_s: float | None = _help("... or once its oldest pending item is this old, in seconds.", default=600.0)
    namespaces: tuple[str, ...] | None = _help("Only these namespaces (None: every namespace).", default=None)
    poll_s: float = _help("How often the thread looks at the buffer, in seconds.", default=1.0)
    retry_s: float = _help("First retry of a failed consolidation after this many seconds (then doubling).",
                           default=5.0)
    retry_max_s: float = _help("Longest wait between retries, in seconds.", default=600.0)

    def __post_init__(self) -> None:
        for name in ("max_items", "max_tokens"):
            value = getattr(self, name)
            _expect(value is None or value >= 1, name, "None or an int >= 1", value)
        _expect(self.max_age_s is None or self.max_age_s >= 0, "max_age_s", "None or >= 0", self.max_age_s)
        _expect(self.poll_s > 0, "poll_s", "> 0", self.poll_s)
        _expect(0 < self.retry_s <= self.retry_max_s, "retry_s", "> 0 and <= retry_max_s", self.retry_s)

    def due(self, stats: dict[str, dict[str, float]]) -> list[str]:
        """The namespaces whose pending items meet a trigger (``stats``: ``loramem.pending.stats``)."""
        return [ns for ns, s in stats.items() if (self.namespaces is None or ns in self.namespaces) and (
                (self.max_items is not None and s["items"] >= self.max_items)
                or (self.max_tokens is not None and s["tokens"] >= self.max_tokens)
                or (self.max_age_s is not None and s["oldest_s"] >= self.max_age_s))]


class Consolidator:
    """The thread. ``consolidate(namespace)`` writes one namespace's pending items (taking the memory's write
    lock); ``stats()`` is the buffer per namespace; ``heartbeat(state, detail)`` records the state in the store."""

    def __init__(self, policy: ConsolidationPolicy, consolidate: Callable[[str], list[WriteReport]],
                 stats: Callable[[], dict[str, dict[str, float]]],
                 heartbeat: Callable[[str, dict[str, Any]], None]) -> None:
        self.policy = policy
        self._consolidate, self._stats, self._heartbeat = consolidate, stats, heartbeat
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._flushes = 0  # flush() requests not yet served
        self._served = 0
        self._state = "starting"
        self._namespace: str | None = None
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self.errors: list[dict[str, Any]] = []  # every failure: namespace, error, at, retry_in_s
        self.reports: list[WriteReport] = []  # every version the thread committed
        self._flush_reports: list[WriteReport] = []
        self._thread = threading.Thread(target=self._run, name="loramem-consolidator", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {"state": self._state, "namespace": self._namespace, "running": self.running,
                    "consolidated_versions": len(self.reports), "errors": len(self.errors),
                    "last_error": self.errors[-1] if self.errors else None,
                    "retry_in_s": {ns: round(max(0.0, t - time.time()), 1) for ns, t in self._retry_at.items()},
                    "policy": self.policy.to_dict()}

    def flush(self, timeout: float | None = None) -> list[WriteReport]:
        """Consolidate every pending item now and wait; returns the versions committed meanwhile. Raises
        ``ConsolidationError`` when a namespace failed (its items stay pending), ``TimeoutError`` after
        ``timeout`` seconds (the work goes on)."""
        with self._cond:
            if not self.running:
                raise RuntimeError("the consolidator is stopped")
            self._flushes += 1
            ticket = self._served + self._flushes
            self._wake.set()
            if not self._cond.wait_for(lambda: self._served >= ticket or not self.running, timeout):
                raise TimeoutError(f"flush: the buffer was not consolidated within {timeout} s (it goes on)")
            if self._served < ticket:
                raise RuntimeError("the consolidator stopped before the flush was served")
            out, self._flush_reports = self._flush_reports, []
            error = self._flush_error
        if error is not None:
            raise ConsolidationError(f"consolidation of namespace {error[0]!r} failed: {error[1]}") from error[1]
        return out

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the consolidation in flight (a write is never cut short); pending items stay pending."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop."""
        try:
            if self.running:
                self.flush(timeout)
        finally:
            self.stop(timeout)

    _flush_error: tuple[str, BaseException] | None = None

    _beat: tuple[str, str | None, float] = ("", None, 0.0)  # the last heartbeat written: state, namespace, when

    def _set(self, state: str, namespace: str | None = None) -> None:
        with self._cond:
            self._state, self._namespace = state, namespace
        if self._beat[:2] == (state, namespace) and time.time() - self._beat[2] < 30.0:
            return  # the loop passes here every poll_s: an fsync'd write per poll would be for nothing
        self._beat = (state, namespace, time.time())
        try:
            self._heartbeat(state, {"namespace": namespace, "errors": len(self.errors),
                                    "versions": len(self.reports)})
        except Exception:  # the heartbeat is advisory (ls in another process); the work must go on
            log.exception("loramem consolidator: could not record its state")

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._set("idle")
                self._wake.wait(self.policy.poll_s)
                self._wake.clear()
                if self._stopping.is_set():
                    break
                with self._cond:
                    flushing, self._flush_error = self._flushes, None
                now = time.time()
                stats = self._stats()
                mine = [ns for ns in sorted(stats) if self.policy.namespaces is None or ns in self.policy.namespaces]
                due = mine if flushing else [
                    ns for ns in self.policy.due(stats) if self._retry_at.get(ns, 0.0) <= now]
                for ns in due:
                    if self._stopping.is_set():
                        break
                    self._one(ns, flushing > 0)
                if flushing:
                    with self._cond:
                        self._flushes -= flushing
                        self._served += flushing
                        self._cond.notify_all()
        finally:
            self._set("stopped")
            with self._cond:
                self._cond.notify_all()

    def _one(self, ns: str, flushing: bool) -> None:
        self._set("consolidating", ns)
        try:
            reports = self._consolidate(ns)
        except Exception as exc:
            n = self._failures[ns] = self._failures.get(ns, 0) + 1
            wait = min(self.policy.retry_max_s, self.policy.retry_s * 2 ** (n - 1))
            self._retry_at[ns] = time.time() + wait
            with self._cond:
                self.errors.append({"namespace": ns, "error": f"{type(exc).__name__}: {exc}", "at": time.time(),
                                    "retry_in_s": wait})
                if flushing:
                    self._flush_error = (ns, exc)
            log.exception("loramem consolidator: namespace %r failed (attempt %d); retrying in %.0f s", ns, n, wait)
            return
        self._failures.pop(ns, None)
        self._retry_at.pop(ns, None)
        with self._cond:
            self.reports += reports
            if flushing:
                self._flush_reports += reports
