"""LoRAMemoryRetriever: nodes recalled from a loramem module, by generating with it active.

A thin wrapper of ``KnowledgeMemory.recall`` (``loramem.recall``). Parametric memory has no chunks to look up,
so a "retrieved" node is text the module generates: exactly ``similarity_top_k`` nodes, the first answering
the query itself, the next the stored questions of the items most similar to the query (on the embedded
all-MiniLM-L6-v2), then generic recall prompts once the items run out, all in one batched ``ask``. The stored
item is provenance only (ids and labels in the metadata, hidden from the LLM): the node text is always what
the module recalled, never the stored answer. A namespace with no module yet (or unknown) gives no nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llama_index.llms.loramem.base import shared_memory
from loramem.interop import check_namespace, default_model

if TYPE_CHECKING:
    from loramem import KnowledgeMemory
    from loramem.recall import Recollection


def to_node(r: Recollection) -> NodeWithScore:
    """A recollection as a scored LlamaIndex node; its metadata is provenance, hidden from LLMs and embedders."""
    metadata = {
        "namespace": r.namespace,
        "module_id": r.module,
        "module_version": r.version,
        "modules": r.modules,
        "module_versions": r.versions,
        "question": r.prompt,
        "kind": r.kind,
        "reader": r.reader,
        "item_ids": r.item_ids,
        "items": r.item_labels,
    }
    key = f"{r.module}:{r.version}:{r.prompt}"
    node = TextNode(
        id_=f"loramem-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}",
        text=f"Q: {r.prompt}\nA: {r.text}",
        metadata=metadata,
        excluded_llm_metadata_keys=list(metadata),
        excluded_embed_metadata_keys=list(metadata),
    )
    return NodeWithScore(node=node, score=r.score)


class LoRAMemoryRetriever(BaseRetriever):
    """Retrieve by recall: exactly ``similarity_top_k`` nodes generated with the namespace's module(s) active
    (none when the namespace holds no module yet or is unknown; ``namespace=None``: the bare base model).

    Scores, in [0, 1]: 1.0 for the answer to the query itself, the item's embedding similarity to the query
    for a stored question, 0.0 for a generic recall prompt; nodes come in that order. Node metadata:
    ``namespace``, ``module_id``/``module_version`` (the module that answered this node's question, as routed
    in a namespace of several), ``modules``/``module_versions``, ``question``, ``kind`` (``query``, ``item``,
    ``recall``), ``reader``, and ``item_ids``/``items`` (for an item's node, that item; otherwise the stored
    items the query names).
    """

    def __init__(
        self,
        store_path: str,
        model_name: str | None = None,
        *,
        namespace: str | None = "default",
        module: str | None = None,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        max_new_tokens: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(similarity_top_k, int) or similarity_top_k < 1:
            raise ValueError(f"similarity_top_k: expected an int >= 1, got {similarity_top_k!r}")
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens: expected an int >= 1 or None, got {max_new_tokens!r}")
        self.store_path = str(store_path)
        self.model_name = default_model() if model_name is None else model_name
        self.namespace = check_namespace(namespace)
        self.module = module
        self.similarity_top_k = similarity_top_k
        self.max_new_tokens = max_new_tokens
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def memory(self) -> KnowledgeMemory:
        """The shared ``KnowledgeMemory`` of this store and model."""
        return shared_memory(self.store_path, self.model_name)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._recall(query_bundle.query_str)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Generation blocks: run it in a worker thread so the event loop stays free.
        return await asyncio.to_thread(self._recall, query_bundle.query_str)

    def _recall(self, query: str) -> list[NodeWithScore]:
        out = self.memory.recall(
            query, self.similarity_top_k, self.namespace, module=self.module, max_new_tokens=self.max_new_tokens
        )
        return [to_node(r) for r in out]
