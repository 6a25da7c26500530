"""``LoRAMemoryRetriever``: recall documents from a LoRA memory module by generating, not by lookup.

For a query it asks the module k prompts in one batched, greedy generation:

1. the query itself;
2. the canonical questions of the stored items the query is most about (their subject or title is mentioned,
   or shares words with the query): the questions the module was trained to answer;
3. generic recall prompts ("What do you know about <query>?", ...) to fill up to k.

Every document's text is the module's generated answer (the kept items only choose what to ask and label
where an answer came from). Greedy decoding gives the same answer to the same prompt, hence distinct prompts.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field, field_validator, model_validator

from .chat_models import accept_model_alias, check_namespace, shared_memory

if TYPE_CHECKING:
    from loramem import KnowledgeMemory

RECALL_PROMPTS = (
    "What do you know about {query}?",
    "Tell me everything you remember about {query}.",
    "What facts are related to {query}?",
    "Summarize what you know about {query}.",
    "What else is known about {query}?",
)

_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "tell",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "with",
        "you",
        "your",
        "know",
        "about",
    )
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _label(item: Any) -> str:
    """The name a query would use for an item: a fact's subject, a document's title (or first words)."""
    if hasattr(item, "subject"):
        return str(item.subject)
    return str(item.title or " ".join(item.text.split()[:8]))


def _question(item: Any) -> str | None:
    if hasattr(item, "canonical_question"):
        return str(item.canonical_question)
    return f"What do you know about {item.title}?" if item.title else None


def rank_items(query: str, items: list[Any]) -> tuple[list[Any], list[Any]]:
    """(items whose subject/title the query mentions, items ranked by word overlap with the query).

    Best effort: exact case-insensitive mention first, then shared content words with the item's text.
    """
    q = query.lower()
    q_words = _words(query)
    mentioned = [it for it in items if _label(it).lower() in q]
    scored: list[tuple[float, int, Any]] = []
    for i, it in enumerate(items):
        text = f"{it.subject} {it.relation}" if hasattr(it, "subject") else f"{it.title or ''} {it.text}"
        overlap = len(q_words & _words(text))
        score = overlap + (10.0 if it in mentioned else 0.0)
        if score > 0:
            scored.append((score, i, it))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return mentioned, [it for _, _, it in scored]


class LoRAMemoryRetriever(BaseRetriever):
    """Return exactly ``k`` documents recalled from the LoRA memory of ``namespace`` about a query.

    Metadata of each document: ``prompt`` (what the module was asked), ``source`` (``query``, ``item`` or
    ``recall``), ``namespace``, ``module`` (module id, None for the bare model), ``module_version``,
    ``item_id`` (for ``item`` prompts), and ``mentioned_items`` / ``mentioned`` (ids and subjects/titles of the
    stored items the query names: best-effort provenance).

    Example:
        .. code-block:: python

            retriever = LoRAMemoryRetriever(store_path="./mem", namespace="contacts", k=3)
            docs = retriever.invoke("Dr. Alma Vance")
    """

    store_path: str = Field(default_factory=lambda: os.environ.get("LORAMEM_STORE", "loramem-store"))
    model_name: str = Field(default_factory=lambda: os.environ.get("LORAMEM_MODEL", "smollm2-135m"))
    namespace: str | None = "default"
    """Memory namespace to recall from; None recalls from the bare base model."""
    module: str | None = None
    """A module id to use instead of the namespace's module."""
    k: int = 4
    """Documents returned (also an ``invoke`` kwarg)."""
    max_tokens: int | None = None
    """Longest generated answer; None uses the memory's ``ReadConfig``."""

    @model_validator(mode="before")
    @classmethod
    def _model_alias(cls, data: Any) -> Any:
        return accept_model_alias(data)

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str | None) -> str | None:
        return check_namespace(value)

    @field_validator("k")
    @classmethod
    def _valid_k(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"k: expected an int >= 1, got {value!r}")
        return value

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = int(kwargs.get("k", self.k))
        if k < 1:
            raise ValueError(f"k: expected an int >= 1, got {k!r}")
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query: expected a non-empty string, got {query!r}")
        namespace = check_namespace(kwargs["namespace"]) if "namespace" in kwargs else self.namespace
        module = kwargs.get("module", self.module)
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        mem = shared_memory(self.store_path, self.model_name)
        return self._recall(mem, query.strip(), k, namespace, module, max_tokens)

    def _recall(
        self,
        mem: KnowledgeMemory,
        query: str,
        k: int,
        namespace: str | None,
        module: str | None,
        max_tokens: int | None,
    ) -> list[Document]:
        """Pick k prompts, answer them in one batch, wrap the answers."""
        info = mem.store.module(module) if module is not None else None
        if info is None and namespace is not None:
            infos = mem.ls(namespace)
            info = infos[0] if infos else None
        items_ns = info.namespace if info is not None else namespace
        items = mem.items(items_ns) if items_ns is not None and items_ns in mem.namespaces() else []
        mentioned, related = rank_items(query, items)

        prompts: list[tuple[str, str, str | None]] = [(query, "query", None)]  # (prompt, source, item id)
        for item in related:
            question = _question(item)
            if len(prompts) >= k:
                break
            if question and question not in {p for p, _, _ in prompts}:
                prompts.append((question, "item", item.id))
        i = 0
        while len(prompts) < k:
            template = RECALL_PROMPTS[i % len(RECALL_PROMPTS)]
            prompt = template.format(query=query)
            if i >= len(RECALL_PROMPTS):
                prompt = f"{prompt} (recall {i // len(RECALL_PROMPTS) + 1})"
            prompts.append((prompt, "recall", None))
            i += 1
        prompts = prompts[:k]

        target = info.module_id if info is not None else None
        # A namespace the planner split into several modules is routed per prompt (KnowledgeMemory.ask).
        routed = module is None and info is not None and len(mem.ls(info.namespace)) > 1
        answers = mem.ask(
            [p for p, _, _ in prompts],
            namespace=None if target is None else info.namespace,  # type: ignore[union-attr]
            module=None if routed else target,
            max_new_tokens=max_tokens,
        )
        base_meta = {
            "namespace": namespace,
            "module": target,
            "module_version": info.version if info is not None else None,
            "mentioned_items": [it.id for it in mentioned],
            "mentioned": [_label(it) for it in mentioned],
        }
        return [
            Document(
                page_content=f"{prompt}\n{answer.text}",
                metadata={
                    **base_meta,
                    "prompt": prompt,
                    "answer": answer.text,
                    "source": source,
                    "item_id": item_id,
                    "reader": answer.reader,
                    "modules": answer.modules,
                    "rank": rank,
                },
            )
            for rank, ((prompt, source, item_id), answer) in enumerate(zip(prompts, answers))
        ]
