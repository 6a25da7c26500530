"""Recall: what a memory holds about a query, as texts the module generates (the retrievers' one core).

Parametric memory has no chunks to look up, so a "retrieved" text is an answer the memory generates. For a
query, ``recall`` asks exactly ``k`` prompts in one batched, greedy ``ask``:

1. ``query``: the query itself;
2. ``item``: the stored questions of the namespace's items most similar to the query (cosine of the query
   against each item's canonical question and ``item_key``, on the embedded all-MiniLM-L6-v2; word overlap
   when the embedder is not installed), most similar first: the questions the module was trained on;
3. ``recall``: generic prompts ("What do you know about <query>?", ...) once the items run out.

Rule for ``k``: exactly ``k`` recollections whenever a module answers (the namespace holds one, or ``module=``
names one) or ``namespace=None`` asks the bare base model; none when the namespace holds no module yet (or
is unknown): an empty memory recalls nothing.

Score, in [0, 1], how close the prompt asked is to the query: 1.0 for the query itself, the item's similarity
(cosine clipped at 0, or the overlap fraction) for an item prompt, 0.0 for a generic recall prompt; the list
is in that order. The stored item is provenance only (ids and labels that never contain its answer): the text
is always what the memory generated. Layer: imports ``types``, ``text`` and (lazily) ``embed``, never the
facade; the memory comes in as anything with :class:`RecallMemory`'s methods.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .text import item_key
from .types import Answer, Fact, Item

Kind = Literal["query", "item", "recall"]

RECALL_PROMPTS = (
    "What do you know about {query}?",
    "Tell me everything you remember about {query}.",
    "What facts are related to {query}?",
    "Summarize what you know about {query}.",
    "What else is known about {query}?",
)

# Words that say nothing about which item a query is about (word-overlap fallback and mentions only).
_STOP_WORDS = (
    "a about an and are as at be by did do does for from has have how i in is it its know me my of on or tell "
    "that the their this to was what when where which who whom whose why with you your"
)
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[^\W_]+")


class ModuleLike(Protocol):
    """What recall reads of a module (``loramem.store.ModuleInfo`` has it)."""

    @property
    def module_id(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def version(self) -> int: ...


class RecallMemory(Protocol):
    """The memory's methods recall calls (``KnowledgeMemory`` has them)."""

    def ask(
        self, question: Sequence[str], namespace: str | None = ..., *, module: str | None = ...,
        max_new_tokens: int | None = ...,
    ) -> list[Answer]: ...
    def items(self, namespace: str = ...) -> list[Item]: ...
    def ls(self, namespace: str | None = ...) -> Sequence[ModuleLike]: ...
    def namespaces(self) -> list[str]: ...


@dataclass
class Recollection:
    """One recalled text: the answer the memory generated to ``prompt``, and where it came from."""

    text: str
    prompt: str
    kind: Kind
    score: float
    namespace: str | None  # the namespace the answering modules belong to (None: the bare model)
    modules: list[str] = field(default_factory=list)  # module ids that answered, as routed (empty: bare model)
    versions: list[int] = field(default_factory=list)  # their active versions, one per module
    item_ids: list[str] = field(default_factory=list)  # an item prompt: its item; otherwise the items named
    item_labels: list[str] = field(default_factory=list)  # labels of item_ids (never the stored answer)
    reader: str = "lora"
    answer: Answer | None = field(default=None, repr=False)

    @property
    def module(self) -> str | None:
        """The module that answered (the first, when a question was routed to several); None: bare model."""
        return self.modules[0] if self.modules else None

    @property
    def version(self) -> int | None:
        return self.versions[0] if self.versions else None


def item_label(item: Item) -> str:
    """A short name for an item that never gives its content away: ``subject | relation``, or a title."""
    if isinstance(item, Fact):
        return f"{item.subject} | {item.relation}"
    return item.title or f"document {item.id}"


def item_question(item: Item) -> str:
    """The stored question that recalls an item: a fact's canonical question, what a document says."""
    if isinstance(item, Fact):
        return item.canonical_question
    return f"What does {item.title or 'the document'} say?"


def _name(item: Item) -> str:
    """What a query would call an item (its subject or title), for mentions."""
    if isinstance(item, Fact):
        return item.subject
    return item.title or ""


def mentioned(query: str, items: Sequence[Item]) -> list[Item]:
    """Items whose subject or title the query names (case-insensitive): the query's best-effort provenance."""
    q = query.lower()
    return [it for it in items if (name := _name(it).strip()) and name.lower() in q]


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _key_texts(item: Item) -> list[str]:
    """The texts a query about ``item`` should resemble: its canonical question (facts) and ``item_key``."""
    keys = [item_key(item)]
    return [item.canonical_question, *keys] if isinstance(item, Fact) else keys


# Key vectors, by text (item content is immutable, so a text always embeds the same); bounded.
_VECS: OrderedDict[str, Any] = OrderedDict()
_VECS_MAX = 50_000
_VECS_LOCK = threading.Lock()
_WARNED = False


def _embedder() -> Any:
    """The embedded sentence embedder (raises ImportError when it is not installed)."""
    from .embed import Embedder, embedded_path

    embedded_path()  # fail early and cheaply when the package is missing
    return Embedder.shared()


def _embed(texts: list[str]) -> Any:
    """(len(texts), dim) unit vectors, embedding only the texts not seen before."""
    import numpy as np

    embedder = _embedder()
    with _VECS_LOCK:
        missing = list(dict.fromkeys(t for t in texts if t not in _VECS))
        vecs = embedder.encode(missing) if missing else []
        for t, v in zip(missing, vecs):
            _VECS[t] = v
        for t in texts:
            _VECS.move_to_end(t)
        out = np.stack([_VECS[t] for t in texts])
        while len(_VECS) > _VECS_MAX:
            _VECS.popitem(last=False)
        return out


def rank(query: str, items: Sequence[Item]) -> list[tuple[float, Item]]:
    """Items by similarity to the query, best first (ties: the most recently written first), score in [0, 1].

    Cosine of the query against each item's key texts (its best), clipped at 0, on the embedded
    all-MiniLM-L6-v2. Without the embedder (a warning says so): overlapping content words over the smaller
    word set of the query and the item's key texts.
    """
    global _WARNED
    if not items:
        return []
    keys = [_key_texts(it) for it in items]
    try:
        flat = [query] + [t for ks in keys for t in ks]
        vecs = _embed(flat)
        sims = vecs[1:] @ vecs[0]
        scores, i = [], 0
        for ks in keys:
            scores.append(max(0.0, min(1.0, float(sims[i : i + len(ks)].max()))))
            i += len(ks)
    except ImportError as exc:
        if not _WARNED:
            warnings.warn(f"recall ranks items by word overlap: the embedder is not installed ({exc})",
                          RuntimeWarning, stacklevel=2)
            _WARNED = True
        q = _words(query)
        scores = []
        for ks in keys:
            w = _words(" ".join(ks))
            scores.append(len(q & w) / min(len(q), len(w)) if q and w else 0.0)
    order = sorted(range(len(items)), key=lambda j: (-scores[j], -j))
    return [(scores[j], items[j]) for j in order]


def _recall_prompt(query: str, i: int) -> str:
    prompt = RECALL_PROMPTS[i % len(RECALL_PROMPTS)].format(query=query)
    return f"{prompt} (recall {i // len(RECALL_PROMPTS) + 1})" if i >= len(RECALL_PROMPTS) else prompt


def recall(
    memory: RecallMemory,
    query: str,
    k: int = 4,
    namespace: str | None = "default",
    *,
    module: str | None = None,
    max_new_tokens: int | None = None,
) -> list[Recollection]:
    """What ``memory`` holds about ``query``: exactly ``k`` generated recollections (see the module docstring).

    ``namespace=None``: the bare base model answers (the query and generic prompts). ``module``: that module
    answers every prompt (items of its namespace); otherwise a namespace of several modules is routed per
    prompt (``ask``), and each recollection names the module(s) and version(s) that answered it. A namespace
    that holds no module yet, or is unknown, gives ``[]``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query: expected a non-empty string, got {query!r}")
    query = query.strip()
    if namespace is not None:
        from .store import check_namespace

        check_namespace(namespace)
    if module is not None:
        infos = [i for i in memory.ls() if i.module_id == module]
        if not infos:
            raise KeyError(f"no module {module!r} in this store")
        namespace = infos[0].namespace
    elif namespace is not None:
        infos = list(memory.ls(namespace))
        if not infos:
            return []  # nothing written there yet: an empty memory recalls nothing
    else:
        infos = []
    versions = {i.module_id: i.version for i in memory.ls(namespace)} if namespace is not None else {}
    items = memory.items(namespace) if namespace is not None and namespace in memory.namespaces() else []

    named = mentioned(query, items)
    # (prompt, kind, score, items): the query, then items by similarity, then generic prompts, k in all.
    prompts: list[tuple[str, Kind, float, list[Item]]] = [(query, "query", 1.0, named)]
    seen = {query.lower()}
    for score, item in rank(query, items):
        if len(prompts) >= k:
            break
        question = item_question(item)
        if question.strip().lower() not in seen:
            seen.add(question.strip().lower())
            prompts.append((question, "item", score, [item]))
    i = 0
    while len(prompts) < k:
        prompt = _recall_prompt(query, i)
        i += 1
        if prompt.lower() not in seen:
            seen.add(prompt.lower())
            prompts.append((prompt, "recall", 0.0, named))
    prompts = prompts[:k]

    answers = memory.ask(
        [p for p, _, _, _ in prompts], namespace=namespace, module=module, max_new_tokens=max_new_tokens
    )
    return [
        Recollection(
            text=answer.text,
            prompt=prompt,
            kind=kind,
            score=score,
            namespace=namespace,
            modules=list(answer.modules),
            versions=[versions[m] for m in answer.modules if m in versions],
            item_ids=[it.id for it in about],
            item_labels=[item_label(it) for it in about],
            reader=answer.reader,
            answer=answer,
        )
        for (prompt, kind, score, about), answer in zip(prompts, answers)
    ]


__all__ = ["RECALL_PROMPTS", "Recollection", "RecallMemory", "item_label", "item_question", "mentioned", "rank",
           "recall"]
