"""The task registry: ``get_task(name)``; adding a task is adding one module and one ``register_task`` call."""

from __future__ import annotations

from collections.abc import Callable

from .base import Question, Task, TaskData

TASKS: dict[str, Callable[[], Task]] = {}


def register_task(name: str, factory: Callable[[], Task]) -> None:
    TASKS[name] = factory


def get_task(name: str) -> Task:
    _load_builtin()
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()


def available_tasks() -> list[str]:
    _load_builtin()
    return sorted(TASKS)


def _load_builtin() -> None:
    import importlib

    for module in ("phonebook", "counterfact", "longdoc"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise


__all__ = ["Question", "TASKS", "Task", "TaskData", "available_tasks", "get_task", "register_task"]
