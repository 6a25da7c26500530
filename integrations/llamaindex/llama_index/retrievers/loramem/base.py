"""LoRAMemoryRetriever: nodes recalled from a loramem module, by generating with it active.

Parametric memory has no chunks to look up, so a "retrieved" node is text the module generates:

- the first node answers the query itself;
- the others answer the stored questions of the items the query mentions most (word overlap with a fact's
  subject and relation, or a document's title or text), so a query engine sees what the memory holds
  about the things asked about.

All questions go through one batched ``KnowledgeMemory.ask``. The stored item is provenance only (ids and
labels in the metadata, hidden from the LLM): the node text is always what the module recalled, never the
stored answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llama_index.llms.loramem.base import check_namespace, shared_memory

if TYPE_CHECKING:
    from loramem import KnowledgeMemory

_WORD = re.compile(r"[^\W_]+")
# Words that say nothing about which item a query is about.
_STOP_WORDS = (
    "a an and are about did do does for from has have how in is it its me my of on or tell that the their this "
    "to was what when where which who whom whose why with you your"
)
_STOP = frozenset(_STOP_WORDS.split())


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def item_label(item: Any) -> str:
    """A short name for an item that does not give its content away (no fact object, no document text)."""
    from loramem import Fact

    if isinstance(item, Fact):
        return f"{item.subject} | {item.relation}"
    return item.title or f"document {item.id}"


def item_question(item: Any) -> str:
    """The question that recalls an item: a fact's canonical question, or what a document says."""
    from loramem import Fact

    if isinstance(item, Fact):
        return str(item.canonical_question)
    return f"What does {item.title or 'the document'} say?"


def mention_score(query: set[str], item: Any) -> float:
    """How much of the item the query names, in [0, 1]: overlapping words over the smaller word set."""
    from loramem import Fact

    label = (
        words(f"{item.subject} {item.relation}") if isinstance(item, Fact) else words(item.title or item.text)
    )
    if not query or not label:
        return 0.0
    return len(query & label) / min(len(query), len(label))


class LoRAMemoryRetriever(BaseRetriever):
    """Retrieve by recall: ``similarity_top_k`` nodes generated with the namespace's module active.

    Scores: 1.0 for the answer to the query itself, the mention score (word overlap in [0, 1]) for an item's
    recall. An empty namespace returns no nodes. Node metadata: ``namespace``, ``module_id``,
    ``module_version``, ``question``, ``reader``, and ``item_ids``/``items`` (the stored items the query
    mentions; for an item's node, that item).
    """

    def __init__(
        self,
        store_path: str,
        model_name: str = "smollm2-135m",
        *,
        namespace: str = "default",
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
        namespace = check_namespace(namespace)  # type: ignore[assignment]
        self.store_path = str(store_path)
        self.model_name = model_name
        self.namespace = namespace
        self.module = module
        self.similarity_top_k = similarity_top_k
        self.max_new_tokens = max_new_tokens
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def memory(self) -> KnowledgeMemory:
        """The shared ``KnowledgeMemory`` of this store and model."""
        return shared_memory(self.store_path, self.model_name)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._recall(self.memory, query_bundle.query_str)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Generation blocks: run it in a worker thread so the event loop stays free.
        return await asyncio.to_thread(self._recall, self.memory, query_bundle.query_str)

    def _recall(self, mem: KnowledgeMemory, query: str) -> list[NodeWithScore]:
        """Rank the items the query mentions, then ask everything in one batch."""
        if not query.strip():
            raise ValueError(f"query: expected a non-empty string, got {query!r}")
        infos = [mem.store.module(self.module)] if self.module else mem.ls(self.namespace)
        if not infos:
            return []  # nothing written yet: nothing to recall
        info = infos[0]
        q_words = words(query)
        scored = [(mention_score(q_words, item), i, item) for i, item in enumerate(mem.items(info.namespace))]
        # Most mentioned first; among equals, the most recently written.
        scored.sort(key=lambda s: (-s[0], -s[1]))
        mentioned = [item for score, _, item in scored if score > 0]
        questions, picks = [query], []
        for score, _, item in scored:
            if len(questions) == self.similarity_top_k:
                break
            question = item_question(item)
            if question.strip().lower() not in {q.strip().lower() for q in questions}:  # the query may be one
                questions.append(question)
                picks.append((score, item))
        routed = self.module is None and len(infos) > 1  # a split namespace: KnowledgeMemory.ask routes
        answers = mem.ask(
            questions, namespace=info.namespace, module=None if routed else info.module_id,
            max_new_tokens=self.max_new_tokens,
        )

        base = {"namespace": info.namespace, "module_id": info.module_id, "module_version": info.version}
        nodes = [
            self._node(
                base,
                query,
                answers[0],
                1.0,
                [it.id for it in mentioned],
                [item_label(it) for it in mentioned],
            )
        ]
        for (score, item), answer in zip(picks, answers[1:]):
            nodes.append(self._node(base, answer.question, answer, score, [item.id], [item_label(item)]))
        return nodes

    @staticmethod
    def _node(
        base: dict[str, Any], question: str, answer: Any, score: float, item_ids: list[str], labels: list[str]
    ) -> NodeWithScore:
        metadata = {
            **base,
            "question": question,
            "reader": answer.reader,
            "modules": answer.modules,
            "item_ids": item_ids,
            "items": labels,
        }
        key = f"{base['module_id']}:{base['module_version']}:{question}"
        node = TextNode(
            id_=f"loramem-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}",
            text=f"Q: {question}\nA: {answer.text}",
            metadata=metadata,
            # Provenance is for the application; the LLM and embedders see only what was recalled.
            excluded_llm_metadata_keys=list(metadata),
            excluded_embed_metadata_keys=list(metadata),
        )
        return NodeWithScore(node=node, score=score)
