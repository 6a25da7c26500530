"""What every framework integration needs from loramem besides reading and writing, written once.

- ``shared_memory(opener, store_path, model_name)``: the process-wide memory of a store and model, with the
  ``LORAMEM_STORE`` / ``LORAMEM_MODEL`` defaults and one spelling of the key (real path of a local model).
- ``check_namespace``: a valid namespace, or None (the bare base model).
- ``resolve_namespace``: the integrations' rule for a namespace that holds no module yet.
- ``to_conversation``: (role, content) pairs or ``{"role", "content"}`` dicts as the chat turns the core renders.
- ``answering_modules``: which modules answer a conversation (streams carry no ``Answer``).

Layer: imports no framework and not the facade. ``shared_memory`` takes the opener (``KnowledgeMemory.shared``)
as an argument instead of importing it, so this room stays below the facade and is tested with a fake opener;
the integrations bind it once (``shared_memory(KnowledgeMemory.shared, path, model)``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

M = TypeVar("M")

DEFAULT_STORE = "loramem-store"
DEFAULT_MODEL = "smollm2-135m"


def default_store() -> str:
    """The store folder integrations use when none is given: ``$LORAMEM_STORE``, else ``./loramem-store``."""
    return os.environ.get("LORAMEM_STORE", DEFAULT_STORE)


def default_model() -> str:
    """The base model integrations use when none is given: ``$LORAMEM_MODEL``, else the embedded SmolLM2."""
    return os.environ.get("LORAMEM_MODEL", DEFAULT_MODEL)


def shared_memory(
    opener: Callable[[str, str], M],
    store_path: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
) -> M:
    """``opener(path, model)`` (``KnowledgeMemory.shared``) for this store and model, defaults from the env.

    Every chat model, retriever, store and memory block on the same pair gets the same memory, so the weights
    load once and building those objects stays cheap (the model loads on first use). A local model folder is
    keyed by its real path, an alias or hub id as given; ``~`` in the store path is expanded.
    """
    model = default_model() if model_name is None else model_name
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model_name: expected a non-empty string, got {model_name!r}")
    path = default_store() if store_path is None else os.fspath(store_path)
    if not path.strip():
        raise ValueError(f"store_path: expected a folder path, got {store_path!r}")
    model = os.path.realpath(model) if os.path.isdir(model) else model
    return opener(os.path.expanduser(path), model)


def check_namespace(namespace: str | None) -> str | None:
    """None (the bare base model) or a valid loramem namespace (ValueError otherwise)."""
    if namespace is None:
        return None
    from .store import check_namespace as check

    return check(namespace)


class _Module(Protocol):
    @property
    def module_id(self) -> str: ...


class InteropMemory(Protocol):
    """The memory's methods these helpers call (``KnowledgeMemory`` has them)."""

    def ls(self, namespace: str | None = ...) -> Sequence[Any]: ...
    def which_modules(self, questions: Sequence[str], namespace: str | None = ..., *,
                      module: str | None = ...) -> list[list[str]]: ...


def resolve_namespace(
    memory: InteropMemory, namespace: str | None, module: str | None = None, *, strict: bool = False
) -> str | None:
    """The namespace a chat model / LLM answers from: ``namespace``, or None (the bare model) when it holds no
    module yet (or is unknown) and no ``module`` is named. ``strict``: raise KeyError instead."""
    namespace = check_namespace(namespace)
    if module is not None or namespace is None or memory.ls(namespace):
        return namespace
    if strict:
        raise KeyError(f"namespace {namespace!r} holds no memory module yet (strict=True)")
    return None


def answering_modules(
    memory: InteropMemory, conversation: Sequence[Mapping[str, str]], namespace: str | None,
    module: str | None = None,
) -> list[str]:
    """The module ids that answer ``conversation`` (what ``chat`` reports as ``Answer.modules``), chosen by the
    memory's own rule for the last user message (``KnowledgeMemory.which_modules``). For streams, whose pieces
    carry no ``Answer``."""
    last = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "") or "?"
    return memory.which_modules([last], namespace, module=module)[0]


# Role names frameworks use, onto the three roles every chat template knows. Tool and function results
# become user turns (small models' templates have no tool role).
ROLES = {
    "system": "system", "developer": "system",
    "user": "user", "human": "user",
    "assistant": "assistant", "ai": "assistant", "chatbot": "assistant", "model": "assistant",
    "tool": "user", "function": "user",
}
_TOOL_ROLES = frozenset({"tool", "function"})


def content_text(content: Any) -> str:
    """Message content as text: a string, None (empty), or a list of parts (strings, ``{"type": "text",
    "text": ...}`` dicts, objects with a ``text`` attribute) whose text is joined; other parts (images) drop."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                if part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(getattr(part, "text", None), str):
                parts.append(part.text)
        return "".join(parts)
    raise TypeError(f"content: expected a string, None or a list of parts, got {type(content).__name__}")


def to_conversation(messages: Iterable[tuple[str, Any] | Mapping[str, Any]]) -> list[dict[str, str]]:
    """Messages as ``[{"role": "system"|"user"|"assistant", "content": str}]``, the turns the core renders.

    Each message is a ``(role, content)`` pair or a ``{"role", "content"}`` mapping. Roles are normalised
    (``human``/``ai``/``developer``/``chatbot``/``model`` and the like, case-insensitive; an unknown role is a
    user turn); tool and function results become user turns ``Tool result: ...``; content is text only
    (:func:`content_text`).
    """
    out: list[dict[str, str]] = []
    for message in messages:
        if isinstance(message, Mapping):
            role, content = message.get("role"), message.get("content")
        elif isinstance(message, tuple) and len(message) == 2:
            role, content = message
        else:
            raise TypeError(f"messages: expected (role, content) pairs or dicts, got {message!r:.80}")
        name = str(getattr(role, "value", role)).lower()  # enums (LlamaIndex's MessageRole) by value
        text = content_text(content)
        if name in _TOOL_ROLES:
            text = f"Tool result: {text}"
        out.append({"role": ROLES.get(name, "user"), "content": text})
    if not out:
        raise ValueError("messages: expected at least one message, got none")
    return out


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STORE",
    "InteropMemory",
    "ROLES",
    "answering_modules",
    "check_namespace",
    "content_text",
    "default_model",
    "default_store",
    "resolve_namespace",
    "shared_memory",
    "to_conversation",
]
