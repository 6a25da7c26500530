"""How ``LoRAMemoryStore``'s values sit in the core, and LangGraph's filter semantics over them.

A value is a loramem item whose metadata carries ``key``, ``value`` (the JSON value), ``created_at``,
``updated_at``, ``langgraph_namespace`` (and ``index: False`` for ``put(..., index=False)``). ``Entry`` reads
one back; ``Space`` is one loramem namespace at one moment (its pending items over its consolidated ones).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from langgraph.store.base import MatchCondition

if TYPE_CHECKING:
    from loramem import Document, Fact

    LoItem = Fact | Document


def matches(value: Any, expected: Any) -> bool:
    """LangGraph filter semantics: nested equality, plus $eq/$ne/$gt/$gte/$lt/$lte operators."""
    if isinstance(expected, dict):
        if any(k.startswith("$") for k in expected):
            return all(apply(value, op, arg) for op, arg in expected.items())
        return isinstance(value, dict) and all(matches(value.get(k), v) for k, v in expected.items())
    return bool(value == expected)


def apply(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if value is None:
        return False
    compare = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}
    if op not in compare:
        raise ValueError(
            f"filter: unsupported operator {op!r}; expected one of $eq, $ne, {', '.join(compare)}"
        )
    return bool(compare[op](float(value), float(arg)))


def ns_matches(condition: MatchCondition, ns: tuple[str, ...]) -> bool:
    path = condition.path
    if len(ns) < len(path):
        return False
    pairs = zip(ns, path) if condition.match_type == "prefix" else zip(reversed(ns), reversed(path))
    return all(p == "*" or k == p for k, p in pairs)


def dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def keyed(item: LoItem) -> bool:
    """Whether an item is one of a store's values (others in the namespace are not keys)."""
    md = item.metadata
    return isinstance(md.get("key"), str) and "value" in md and isinstance(md.get("langgraph_namespace"), list)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One key's value, as the core holds it (pending in the buffer, or consolidated in a module)."""

    item: LoItem
    pending: bool
    vector: np.ndarray | None = None  # the buffer's stored embedding (pending items)

    @property
    def namespace(self) -> tuple[str, ...]:
        return tuple(self.item.metadata["langgraph_namespace"])

    @property
    def key(self) -> str:
        return str(self.item.metadata["key"])

    @property
    def value(self) -> dict[str, Any]:
        return dict(self.item.metadata["value"])

    @property
    def created(self) -> float:
        return float(self.item.metadata.get("created_at", 0.0))

    @property
    def updated(self) -> float:
        return float(self.item.metadata.get("updated_at", 0.0))

    @property
    def indexed(self) -> bool:
        return self.item.metadata.get("index", True) is not False


@dataclasses.dataclass
class Space:
    """A loramem namespace seen at one moment: key -> value (pending over consolidated), and who owns an id."""

    held: dict[str, Entry]
    pending: dict[str, Entry]
    owners: dict[str, str | None]  # item id -> its key (None: an item of the namespace that is no store value)

    @property
    def entries(self) -> dict[str, Entry]:
        return {**self.held, **self.pending}


def newest(into: dict[str, Entry], entry: Entry) -> None:
    old = into.get(entry.key)
    if old is None or entry.updated >= old.updated:
        into[entry.key] = entry
