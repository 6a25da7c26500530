"""The memory's locks: reads never wait for a write to finish, only for the training step in flight.

One base model serves every read and every write of a memory (its active adapter is global state), so calls
that run it take ``ModelLock``. A write holds it for the whole write, but between two training steps it hands
it over to the reads that wait (``handover``) and takes it back once they ran. Writes (write, forget, update,
consolidate, ...) also take ``writer``, a plain mutex held for the whole write, handovers included, so a read
is the only thing that can run inside another write: two writes never interleave, and no write waits for the
store's writer lock while holding the model. Layer 0.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class ModelLock:
    """A re-entrant lock whose holder can let waiting threads in between two steps of its work."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = threading.Condition(threading.Lock())
        self._waiting = 0
        self._owner: int | None = None
        self._depth = 0
        self.handovers = 0  # how many times a write let reads in (``status()``)

    def acquire(self) -> None:
        me = threading.get_ident()
        if self._owner == me:
            self._lock.acquire()
            self._depth += 1
            return
        with self._state:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._state:
                self._waiting -= 1
                self._state.notify_all()
        self._owner, self._depth = me, 1

    def release(self) -> None:
        if self._owner != threading.get_ident():
            raise RuntimeError("ModelLock released by a thread that does not hold it")
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
        self._lock.release()

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    @property
    def held(self) -> bool:
        """Whether some thread holds the lock now."""
        return self._owner is not None

    @property
    def waiting(self) -> int:
        with self._state:
            return self._waiting

    def handover(self, timeout: float = 60.0) -> bool:
        """Called by the holder between two steps: if threads wait, let them all run, then take the lock back.

        Returns whether anyone ran (the caller then restores what they may have changed: the active adapter,
        train mode). Only a holder at depth 1 hands over (inside a nested hold the outer caller is mid-step).
        New readers that keep arriving are let in too, for at most ``timeout`` seconds, then the holder queues
        like any other thread."""
        if self._owner != threading.get_ident() or self._depth != 1:
            return False
        with self._state:
            if not self._waiting:
                return False
        self._owner, self._depth = None, 0
        self._lock.release()
        try:
            with self._state:
                self._state.wait_for(lambda: self._waiting == 0, timeout)
        finally:
            self.acquire()
        self.handovers += 1
        return True


def locked_write(method: F) -> F:
    """A facade write: one at a time (``self._writer``), holding the model (``self._lock``), which it hands
    to waiting reads between training steps."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._writer, self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def locked_read(method: F) -> F:
    """A facade read: one model call at a time (reads switch the shared model's active adapter); it may run
    between two training steps of a write."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
