"""``LoRAMemoryRetriever``: recall documents from a LoRA memory module by generating, not by lookup.

A thin wrapper of ``KnowledgeMemory.recall`` (``loramem.recall``): for a query the memory answers exactly
``k`` prompts in one batched, greedy generation (the query itself, the stored questions of the items most
similar to it on the embedded all-MiniLM-L6-v2, then generic recall prompts), and each answer becomes a
``Document``. Every document's text is what the module generated; the kept items only choose what to ask and
label where an answer came from. A namespace that holds no module yet (or is unknown) gives no documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from loramem.interop import check_namespace, default_model, default_store
from loramem.recall import RECALL_PROMPTS
from loramem.text import render_context
from pydantic import Field, field_validator, model_validator

from .chat_models import accept_model_alias, shared_memory

if TYPE_CHECKING:
    from loramem.recall import Recollection

__all__ = ["RECALL_PROMPTS", "LoRAMemoryRetriever", "format_docs", "to_document"]


def format_docs(docs: Sequence[Document]) -> str:
    """Retrieved documents as the context text of a prompt, in order: ``loramem.text.render_context``, the
    builder the core's RAG/ICL readers and context-mixed training use. Put it before the question with
    ``loramem.text.with_context`` (``retriever | RunnableLambda(format_docs)`` in an LCEL chain), so a module
    is read with the context layout it was trained on."""
    return render_context([d.page_content for d in docs])


def to_document(r: Recollection, rank: int, namespace: str | None, named: Recollection) -> Document:
    """A recollection as a LangChain document (``named``: the query's recollection, whose items it names)."""
    return Document(
        page_content=f"{r.prompt}\n{r.text}",
        metadata={
            "prompt": r.prompt,
            "answer": r.text,
            "source": r.kind,
            "score": r.score,
            "rank": rank,
            "namespace": namespace,
            "module": r.module,
            "module_version": r.version,
            "modules": r.modules,
            "module_versions": r.versions,
            "reader": r.reader,
            "item_id": r.item_ids[0] if r.kind == "item" else None,
            "item_ids": r.item_ids,
            "items": r.item_labels,
            "mentioned_items": named.item_ids,
            "mentioned": named.item_labels,
        },
    )


class LoRAMemoryRetriever(BaseRetriever):
    """Return exactly ``k`` documents recalled from the LoRA memory of ``namespace`` about a query (none when
    the namespace holds no module yet).

    Metadata of each document: ``prompt`` (what the module was asked), ``answer``, ``source`` (``query``,
    ``item`` or ``recall``), ``score`` (1.0 for the query, the item's embedding similarity for an item prompt,
    0.0 for a generic prompt), ``rank``, ``namespace``, ``module``/``module_version`` (the module that answered
    this prompt, as routed; None for the bare model) and ``modules``/``module_versions`` (all of them),
    ``reader``, ``item_id`` (for ``item`` prompts), ``item_ids``/``items`` (this document's items: its item, or
    those the query names) and ``mentioned_items``/``mentioned`` (ids and ``subject | relation`` or title
    labels of the stored items the query names: best-effort provenance).

    Example:
        .. code-block:: python

            retriever = LoRAMemoryRetriever(store_path="./mem", namespace="contacts", k=3)
            docs = retriever.invoke("Dr. Alma Vance")
    """

    store_path: str = Field(default_factory=default_store)
    model_name: str = Field(default_factory=default_model)
    namespace: str | None = "default"
    """Memory namespace to recall from; None recalls from the bare base model."""
    module: str | None = None
    """A module id to use instead of the namespace's module(s)."""
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
        namespace = check_namespace(kwargs["namespace"]) if "namespace" in kwargs else self.namespace
        mem = shared_memory(self.store_path, self.model_name)
        out = mem.recall(
            query,
            int(kwargs.get("k", self.k)),
            namespace,
            module=kwargs.get("module", self.module),
            max_new_tokens=kwargs.get("max_tokens", self.max_tokens),
        )
        return [to_document(r, rank, namespace, out[0]) for rank, r in enumerate(out)]
