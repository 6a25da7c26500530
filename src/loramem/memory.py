"""KnowledgeMemory: the front door. Open a store, write knowledge into LoRA modules, ask questions.

    mem = KnowledgeMemory.open("./mem")
    report = mem.write(facts_or_documents, namespace="contacts")
    answer = mem.ask("What is the phone number of Dr. Alma Vance?", namespace="contacts")

The facade holds the locks and delegates: ``writing`` trains and commits module versions, ``edits`` forgets
and updates single items, ``querying`` routes and generates, ``buffer`` keeps the short-term memory
(``remember``, ``consolidate``), ``adapters`` keeps the loaded modules as named peft adapters on one shared base
model. Reads wait at most for the training step in flight, never for a whole write (``loramem.locks``).
``disabled()`` answers with the bare base model. Layer 5.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from . import buffer, edits, pending, querying, writing
from .adapters import AdapterPool
from .capacity import CapacityModel
from .config import LoraSpec, ModelConfig, PlanConfig, ReadConfig, Settings, SynthConfig, TrainConfig
from .consolidator import Consolidator
from .locks import ModelLock, locked_read, locked_write
from .recall import Recollection
from .recall import recall as _recall
from .route import Router, Routers
from .runtime import Runtime
from .shortterm import ShortTermMemory
from .store import ModuleInfo, ModuleStore, check_namespace
from .types import Answer, Document, Fact, Item, WriteReport, as_items

ModelArg = str | ModelConfig | tuple[Any, Any]

_SHARED: dict[tuple[str, str], KnowledgeMemory] = {}
_SHARED_LOCK = threading.Lock()


def _setting(name: str, doc: str) -> Any:
    """A facade attribute that reads and assigns one of the memory's ``Settings``."""
    return property(lambda self: getattr(self.settings, name), lambda self, v: setattr(self.settings, name, v), doc=doc)


class KnowledgeMemory(ShortTermMemory):
    """Parametric memory over a Hugging Face causal LM. Use ``KnowledgeMemory.open(path)``."""

    def __init__(
        self,
        store: ModuleStore,
        model: ModelArg = "smollm2-135m",
        *,
        lora: LoraSpec | None = None,
        train: TrainConfig | None = None,
        synth: SynthConfig | None = None,
        read: ReadConfig | None = None,
        plan: PlanConfig | None = None,
    ) -> None:
        self.store = store
        if isinstance(model, tuple):
            self.model_config = ModelConfig(name=getattr(model[0], "name_or_path", None) or "in-memory-model")
            self._given: tuple[Any, Any] | None = model
        else:
            self.model_config = model if isinstance(model, ModelConfig) else ModelConfig(name=model)
            self._given = None
        self.settings = Settings(lora=lora or LoraSpec(), train=train or TrainConfig(), synth=synth or SynthConfig(),
                                 read=read or ReadConfig(), plan=plan or PlanConfig())
        self._rt: Runtime | None = None  # built when the model first loads
        self._routers = Routers(store, lambda: self.settings.read)
        self._capacity: CapacityModel | None | bool = False  # False: not looked up yet
        self._lock = ModelLock()
        self._writer = threading.RLock()
        self._consolidator: Consolidator | None = None

    @classmethod
    def shared(cls, path: str | os.PathLike[str], model: str = "smollm2-135m") -> KnowledgeMemory:
        """One memory per (store folder, model) in this process: the weights load once however many
        framework objects (chat models, retrievers, stores) point at the same store. Thread-safe."""
        key = (os.path.realpath(path), model)
        with _SHARED_LOCK:
            mem = _SHARED.get(key)
            if mem is None:
                mem = _SHARED[key] = cls.open(path, model=model)
            return mem

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        model: ModelArg = "smollm2-135m",
        *,
        lora: LoraSpec | None = None,
        train: TrainConfig | None = None,
        synth: SynthConfig | None = None,
        read: ReadConfig | None = None,
        plan: PlanConfig | None = None,
        lock_timeout: float = 600.0,
    ) -> KnowledgeMemory:
        """Open (or create) the store at ``path``. The model loads on first use, so opening is cheap.

        ``model`` is an alias (default ``smollm2-135m``, the embedded SmolLM2-135M-Instruct), a local Hugging Face
        folder, a hub id, a ``ModelConfig``, or an already loaded ``(model, tokenizer)`` pair.
        """
        return cls(ModuleStore(path, lock_timeout=lock_timeout), model, lora=lora, train=train, synth=synth, read=read,
                   plan=plan)

    # --- the model and the configs ---------------------------------------------------------------------------

    @property
    def rt(self) -> Runtime:
        """What the rooms share (store, adapter pool, prompt builder, routers, settings); loads the model."""
        if self._rt is None:
            with self._lock:
                if self._rt is None:
                    self._rt = Runtime.load(self.store, self.model_config, self._given, self.settings, self._routers,
                                            lambda: self.capacity, self._lock)
        return self._rt

    @property
    def loaded(self) -> bool:
        """Whether the base model is loaded (it loads on the first call that needs it)."""
        return self._rt is not None

    @property
    def tokenizer(self) -> Any:
        return self.rt.prompt.tokenizer

    @property
    def prompt_format(self) -> Any:
        """The ``PromptFormat`` that renders questions (and contexts) for both training and reading."""
        return self.rt.prompt

    @property
    def model(self) -> Any:
        """The model used for generation (the PeftModel once any module is loaded)."""
        return self.rt.pool.model

    @property
    def adapters(self) -> AdapterPool:
        """The pool of loaded modules (named peft adapters; ``activate``, ``load``, ``merged``, ``cache_info``)."""
        return self.rt.pool

    @property
    def fingerprint(self) -> str:
        return self.rt.fingerprint

    @property
    def base_params(self) -> int:
        """Parameters of the base model (a LoRA training token costs about 4x this many FLOPs)."""
        return self.rt.base_params

    lora = _setting("lora", "The LoRA spec of new modules.")
    train_config = _setting("train", "How writes train (``TrainConfig``).")
    synth_config = _setting("synth", "How writes synthesize training data (``SynthConfig``).")
    read_config = _setting("read", "How reads generate, route, merge and cache (``ReadConfig``).")
    plan_config = _setting("plan", "How writes are split across modules (``PlanConfig``).")

    @property
    def capacity(self) -> CapacityModel | None:
        """The capacity model the planner uses: ``<store>/capacity.json`` if calibrated for this base model, else
        the one shipped for the embedded model, else None. Assign to override (``mem.capacity = model``)."""
        if self._capacity is False:
            self._capacity = CapacityModel.find(self.store.root, self.model_config.name, self.rt.accepted)
        return self._capacity if isinstance(self._capacity, CapacityModel) else None

    @capacity.setter
    def capacity(self, model: CapacityModel | None) -> None:
        self._capacity = model

    # --- modules as adapters ---------------------------------------------------------------------------------

    @locked_read
    def load_module(self, info: ModuleInfo, pinned: set[str] | None = None) -> str:
        """Load a module version as a named adapter (from disk only on a cache miss); returns the adapter name."""
        return self.rt.pool.load(info, pinned)

    @locked_read
    def merged(self, infos: Sequence[ModuleInfo], method: str | None = None, pinned: set[str] | None = None) -> str:
        """Merge module versions into one adapter (see ``AdapterPool.merged``); cached by module set."""
        return self.rt.pool.merged(infos, method, pinned)

    def cache_info(self) -> dict[str, Any]:
        """Loaded adapters (most recent last), their bytes, and hit/miss/eviction counts of the LRU cache."""
        return self.rt.pool.cache_info()

    @property
    def cache_stats(self) -> dict[str, int]:
        return self.rt.pool.stats

    def router(self, name: str | None = None, top_k: int | None = None, threshold: float | None = None) -> Router:
        """The router ``name`` (default ``ReadConfig.route``) with its options, made once per memory."""
        return self._routers.get(name, top_k, threshold)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Answer with the bare base model inside this block (like peft's ``disable_adapter``)."""
        with self.rt.pool.disabled():
            yield

    # --- writing ---------------------------------------------------------------------------------------------

    @locked_write
    def write(
        self,
        items: Fact | Document | Iterable[Fact | Document],
        namespace: str = "default",
        *,
        module: str | None = None,
        split: bool | None = None,
        lora: LoraSpec | None = None,
        train: TrainConfig | None = None,
        synth: SynthConfig | None = None,
        llm: Any | None = None,
        preserve: Sequence[str] | None = None,
        executor: Any | None = None,
    ) -> WriteReport:
        """Write items into the namespace's module(s), training a new version of each module that changes.

        Where the items go:

        - ``module="<id>"``: into that module (created if the namespace has no module of that id).
        - otherwise the planner decides (``PlanConfig``): with a capacity model for the base model, items that do
          not fit the namespace's modules are grouped by topic and split across new modules, each given the rank
          the capacity model says; without one (or with ``split=False``) everything goes to one module.

        Items already held are not trained on twice; a module's new version replays every item it holds, so
        nothing written before is lost. ``llm``: a callable or LangChain chat model that writes the training
        data (off by default). When several modules change, the report sums them and lists each in ``parts``.
        ``preserve``: prompts whose answers the write must leave as the base model gives them (the preservation
        term, ``TrainConfig.kl_weight``; giving them turns it on unless ``kl_weight`` is set).
        ``executor``: a ``loramem.fanout`` executor (local processes or Ray tasks) that trains the modules of a
        plan holding several in parallel; this process commits them.
        """
        return writing.write(self.rt, items, namespace, module=module, split=split, lora=lora, train=train,
                             synth=synth, llm=llm, preserve=preserve, executor=executor)

    # --- reading ---------------------------------------------------------------------------------------------

    @overload
    def ask(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]; str wins
        self, question: str, namespace: str | None = ..., *, module: str | None = ...,
        modules: Sequence[str | Sequence[str] | None] | None = ..., route: str | None = ...,
        top_k: int | None = ..., threshold: float | None = ..., merge: str | None = ...,
        context: str | Sequence[str | None] | None = ..., max_new_tokens: int | None = ..., combine: str | None = ...,
    ) -> Answer: ...
    @overload
    def ask(
        self, question: Sequence[str], namespace: str | None = ..., *, module: str | None = ...,
        modules: Sequence[str | Sequence[str] | None] | None = ..., route: str | None = ...,
        top_k: int | None = ..., threshold: float | None = ..., merge: str | None = ...,
        context: str | Sequence[str | None] | None = ..., max_new_tokens: int | None = ..., combine: str | None = ...,
    ) -> list[Answer]: ...

    @locked_read
    def ask(
        self,
        question: str | Sequence[str],
        namespace: str | None = "default",
        *,
        module: str | None = None,
        modules: Sequence[str | Sequence[str] | None] | None = None,
        route: str | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        merge: str | None = None,
        context: str | Sequence[str | None] | None = None,
        max_new_tokens: int | None = None,
        combine: str | None = None,
    ) -> Answer | list[Answer]:
        """Answer one question or a list (batched) with the right module(s) active.

        Which modules answer: ``namespace=None`` the bare base model; ``module`` one module id for every
        question; ``modules`` one entry per question (a module id, a list of ids, or None for the bare
        model: oracle routing); otherwise the namespace's module, or, when it has several, the router
        (``route``, default ``ReadConfig.route``: ``embedding``, top-``top_k`` above ``threshold``; a question
        no module reaches is answered by the bare model). Questions routed to different modules share one
        generation pass; one routed to several keeps the answer its surest module gives (``details["select"]``)
        unless ``merge`` (ties, linear, cat, ...) or ``ReadConfig.compose="merge"`` merges them. ``context``: text
        before the question; ``combine="gate"`` also answers closed-book and keeps the surer (``loramem.compose``).
        """
        single = isinstance(question, str)
        questions: list[str] = [question] if isinstance(question, str) else list(question)
        answers = querying.ask(self.rt, questions, namespace, module=module, modules=modules, route=route, top_k=top_k,
                               threshold=threshold, merge=merge, context=context, max_new_tokens=max_new_tokens,
                               combine=combine)
        return answers[0] if single else answers

    @locked_read
    def which_modules(self, questions: Sequence[str], namespace: str | None = "default", *,
                      module: str | None = None) -> list[list[str]]:
        """The module ids that would answer each question, chosen as ``ask`` chooses them ([]: the bare model)."""
        selection, _ = querying.select(self.rt, list(questions), namespace, module)
        return [[info.module_id for info, _ in sel] for sel in selection]

    @locked_read
    def recall(self, query: str, k: int = 4, namespace: str | None = "default", *, module: str | None = None,
               max_new_tokens: int | None = None) -> list[Recollection]:
        """What the memory holds about ``query``: exactly ``k`` generated recollections (none for a namespace with
        no module yet), the query first, then the most similar items' stored questions (see ``loramem.recall``)."""
        return _recall(self, query, k, namespace, module=module, max_new_tokens=max_new_tokens)

    @locked_read
    def logprobs(
        self,
        questions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        namespace: str | None = "default",
        *,
        module: str | None = None,
        modules: Sequence[str | Sequence[str] | None] | None = None,
        route: str | None = None,
        merge: str | None = None,
        context: str | Sequence[str | None] | None = None,
        reduce: str = "sum",
    ) -> list[list[float]]:
        """Log-probability of each candidate answer given each question, as the chosen module(s) would answer.

        ``reduce``: ``sum`` (the whole answer), ``first`` (its first token, CounterFact's efficacy test) or
        ``mean`` (per token). Modules are chosen as in ``ask``. One forward pass per (question, candidate), batched.
        """
        return querying.logprobs(self.rt, questions, candidates, namespace, module=module, modules=modules,
                                 route=route, merge=merge, context=context, reduce=reduce)

    @locked_read
    def chat(
        self,
        conversations: Sequence[Sequence[dict[str, str]]],
        namespace: str | None = "default",
        *,
        module: str | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[Answer]:
        """Next assistant turn for each conversation (lists of {"role", "content"}), batched.

        In a namespace of several modules, each conversation is routed by its last user message."""
        return querying.chat(self.rt, conversations, namespace, module=module, max_new_tokens=max_new_tokens,
                             stop=stop)

    @locked_read
    def complete(
        self,
        prompts: Sequence[str],
        namespace: str | None = "default",
        *,
        module: str | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[Answer]:
        """Raw continuations of already formatted prompts (no chat template), batched."""
        return querying.complete(self.rt, prompts, namespace, module=module, max_new_tokens=max_new_tokens, stop=stop)

    def stream_chat(
        self,
        conversation: Sequence[dict[str, str]],
        namespace: str | None = "default",
        *,
        module: str | None = None,
        max_new_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Stream the next assistant turn of one conversation as text pieces."""
        yield from querying.stream_chat(self.rt, self._lock, conversation, namespace, module=module,
                                        max_new_tokens=max_new_tokens, stop=stop)

    # --- inspection ------------------------------------------------------------------------------------------

    def ls(self, namespace: str | None = None) -> list[ModuleInfo]:
        """Modules (active versions) with rank, knowledge tokens held and measured recall."""
        return self.store.modules(namespace)

    def namespaces(self) -> list[str]:
        return self.store.namespaces()

    def items(self, namespace: str | None = None) -> list[Item]:
        """The items a namespace keeps; without one, every namespace's items (each item once)."""
        return self.store.items(None if namespace is None else check_namespace(namespace))

    def fill(self, info: ModuleInfo) -> tuple[int, int | None]:
        """(knowledge tokens held, capacity at its rank) of a module; capacity None without a capacity model."""
        cap = self.capacity
        return info.knowledge_tokens, (cap.capacity(int(info.lora_spec.get("r", 0))) if cap is not None else None)

    # --- forgetting and updating -----------------------------------------------------------------------------

    def forget(self, item_ids: str | Sequence[str], namespace: str | None = None, *,
               verify: bool = True) -> WriteReport | None:
        """Delete items: only the modules holding them are rebuilt, from the items they keep (new versions;
        old versions stay until ``gc``). The rebuild starts from fresh weights, so nothing of a deleted item
        survives in the adapter. With ``verify`` the report's ``details["verify"]`` measures, on the new
        versions, the deleted items' recall against the bare model's and the kept items' recall.

        ``namespace`` None: the namespace that keeps the items (an error lists the namespaces when an item
        sits in several). Pending items (``remember``) leave the buffer without training. Returns None when
        nothing was trained (only pending items, or the modules are dropped).
        """
        ids = [item_ids] if isinstance(item_ids, str) else list(item_ids)
        found = buffer.pending_ids(self.store, namespace, ids)
        if len(found) > 1:
            raise ValueError(f"items are pending in namespaces {sorted(found)}: pass namespace= to say which")
        for ns, pids in found.items():
            pending.drop(self.store, ns, pids)
        rest = [i for i in ids if not any(i in p for p in found.values())]
        if not rest and found:
            return None
        with self._writer, self._lock:
            return edits.forget(self.rt, rest, namespace, verify)

    forget_items = forget  # loramem 0.1's name for deleting items (its forget(namespace) is forget_namespace)

    def update(
        self,
        items: Fact | Document | Iterable[Fact | Document],
        namespace: str | None = None,
        *,
        replaces: str | Sequence[str] | None = None,
        verify: bool = True,
        synth: SynthConfig | None = None,
    ) -> WriteReport | None:
        """Change facts (or documents): each replaced item is deleted and the new one written in its place,
        rebuilding only the modules that held the old ones (one new version each, from fresh weights).

        An item replaces ``replaces`` (item ids; one item only), else the item with the same key: a fact with
        the same subject and relation (and question, if set), a document with the same title. ``namespace``
        None: the one namespace that holds what is replaced. With ``verify`` the report's ``details["verify"]``
        measures the new values' recall and the old values' recall against the bare model's. A new value of a
        pending item replaces it in the buffer, untrained; then the report is None if nothing else changed.
        """
        new_items = as_items(items)
        if replaces is None:
            ns, buffered = buffer.replaced_pending(self.store, new_items, namespace)
            if buffered:
                assert ns is not None
                buffer.remember(self.store, buffered, ns)
                new_items = [it for it in new_items if it not in buffered]
                if not new_items:
                    return None
        with self._writer, self._lock:
            return edits.update(self.rt, new_items, namespace, replaces, verify, synth)

    @locked_write
    def forget_namespace(self, namespace: str) -> list[str]:
        """Drop a namespace: its modules and the items kept for it. Returns the dropped module ids."""
        return edits.forget_namespace(self.store, self._rt.pool if self._rt else None, self._routers, namespace)

    @locked_write
    def drop(self, module_id: str) -> None:
        """Drop one module (its items stay kept and can be written again)."""
        edits.drop(self.store, self._rt.pool if self._rt else None, self._routers, module_id)

    @locked_write
    def gc(self) -> int:
        """Delete old module versions, leftovers of interrupted writes and the router keys of versions that are
        gone; returns the number of folders and files removed."""
        with self.store.write_lock():
            return len(self.store.gc()) + len(self._routers.gc())

    def close(self) -> None:
        """Stop the consolidator (after the write in flight; pending items stay pending), close the store."""
        if self._consolidator is not None:
            self._consolidator.stop()
        self.store.close()

    def __enter__(self) -> KnowledgeMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeMemory({str(self.store.root)!r}, model={self.model_config.name!r})"
