"""KnowledgeMemory: the front door. Open a store, write knowledge into LoRA modules, ask questions.

    mem = KnowledgeMemory.open("./mem")
    report = mem.write(facts_or_documents, namespace="contacts")
    answer = mem.ask("What is the phone number of Dr. Alma Vance?", namespace="contacts")

One module per namespace (routing across many modules builds on this). Writing more items into a namespace
trains a new version of its module, starting from the previous version's weights and replaying every item
the namespace holds, so nothing written before is lost. Modules are loaded as named peft adapters on one
shared base model; ``disabled()`` answers with the bare base model.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

from .capacity import CapacityModel
from .config import MERGE_METHODS, LoraSpec, ModelConfig, PlanConfig, ReadConfig, SynthConfig, TrainConfig
from .plan import Assignment
from .recall import Recollection
from .recall import recall as _recall
from .store import BaseModelMismatchError, ModuleInfo, ModuleStore, check_namespace
from .types import Answer, Document, Fact, Item, WriteReport

ModelArg = str | ModelConfig | tuple[Any, Any]
F = TypeVar("F", bound=Callable[..., Any])
BASE = "__base__"  # peft's adapter name for "no adapter" in a mixed-adapter batch


_SHARED: dict[tuple[str, str], KnowledgeMemory] = {}
_SHARED_LOCK = threading.Lock()


def _locked(method: F) -> F:
    """One call at a time per memory: reads and writes switch the shared model's active adapter."""

    @functools.wraps(method)
    def wrapper(self: KnowledgeMemory, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class KnowledgeMemory:
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
        self.lora = lora or LoraSpec()
        self.train_config = train or TrainConfig()
        self.synth_config = synth or SynthConfig()
        self.read_config = read or ReadConfig()
        self._base: Any = None  # the transformers model (adapters get injected into it)
        self._peft: Any = None  # PeftModel wrapping _base, once a first adapter exists
        self._prompt: Any = None
        self._fingerprint: str | None = None
        # LRU cache of loaded adapters: module id (or merged-set key) -> adapter name ("<id>__v<N>", "merged__...")
        self._loaded: OrderedDict[str, str] = OrderedDict()
        self._adapter_bytes: dict[str, int] = {}
        self._adapter_sha: dict[str, str] = {}  # a module id re-created after a drop restarts at v1
        self.cache_stats = {"hits": 0, "misses": 0, "evictions": 0}
        self.plan_config = plan or PlanConfig()
        self._capacity: CapacityModel | None | bool = False  # False: not looked up yet
        self._routers: dict[tuple[str, int, float], Any] = {}
        self._lock = threading.RLock()

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

    # --- model -----------------------------------------------------------------------------------------------

    @_locked
    def _ensure_model(self) -> None:
        if self._base is not None:
            return
        from . import models
        from .prompts import PromptFormat

        if self._given is not None:
            self._base, tok = models.prepare(*self._given)
        else:
            self._base, tok = models.load(self.model_config)
        self._prompt = PromptFormat(tok, self.model_config.system_prompt)
        self._fingerprint = models.fingerprint(self._base)
        self.base_params = models.count_params(self._base)

    @property
    def tokenizer(self) -> Any:
        self._ensure_model()
        return self._prompt.tokenizer

    @property
    def prompt_format(self) -> Any:
        """The ``PromptFormat`` that renders questions (and contexts) for both training and reading."""
        self._ensure_model()
        return self._prompt

    @property
    def model(self) -> Any:
        """The model used for generation (the PeftModel once any module is loaded)."""
        self._ensure_model()
        return self._peft if self._peft is not None else self._base

    @property
    def fingerprint(self) -> str:
        self._ensure_model()
        assert self._fingerprint is not None
        return self._fingerprint

    def _add_adapter(self, name: str, peft_cfg: Any) -> None:
        from peft import get_peft_model

        if self._peft is None:
            self._peft = get_peft_model(self._base, peft_cfg, adapter_name=name)
        else:
            self._peft.add_adapter(name, peft_cfg)
        self._peft.eval()  # new modules start in training mode; reads (and mixed batches) need eval mode

    def _remove_adapter(self, name: str) -> None:
        if self._peft is None or name not in self._peft.peft_config:
            return
        if len(self._peft.peft_config) == 1:
            # peft cannot delete its last adapter: unwrap back to the plain base model instead.
            self._base = self._peft.unload()
            self._peft = None
        else:
            import warnings

            with warnings.catch_warnings():
                # "Adapter X was active which is now deleted": reads always set the adapter they need.
                warnings.simplefilter("ignore", UserWarning)
                self._peft.delete_adapter(name)
        for key, loaded in list(self._loaded.items()):
            if loaded == name:
                del self._loaded[key]
        self._adapter_bytes.pop(name, None)
        self._adapter_sha.pop(name, None)

    def _adapter_size(self, name: str) -> int:
        return sum(p.numel() * p.element_size() for n, p in self._peft.named_parameters() if f".{name}." in n)

    def _touch(self, key: str, name: str, pinned: set[str]) -> None:
        """Mark an adapter most recently used, then evict least recently used ones over the memory budget."""
        self._loaded[key] = name
        self._loaded.move_to_end(key)
        if name not in self._adapter_bytes:
            self._adapter_bytes[name] = self._adapter_size(name)
        budget = int(self.read_config.cache_mb * 2**20)
        for old_key in list(self._loaded):
            if sum(self._adapter_bytes.get(n, 0) for n in set(self._loaded.values())) <= budget:
                break
            old = self._loaded[old_key]
            if old in pinned or old == name:
                continue
            self._remove_adapter(old)
            self.cache_stats["evictions"] += 1

    def cache_info(self) -> dict[str, Any]:
        """Loaded adapters (most recent last), their bytes, and hit/miss/eviction counts of the LRU cache."""
        return {"loaded": list(self._loaded), "bytes": sum(self._adapter_bytes.values()),
                "budget_bytes": int(self.read_config.cache_mb * 2**20), **self.cache_stats}

    def _check_base(self, info: ModuleInfo) -> None:
        if info.base_fingerprint != self.fingerprint:
            raise BaseModelMismatchError(
                f"module {info.module_id} was trained on base model {info.base_model!r} (fingerprint "
                f"{info.base_fingerprint}), but the loaded model is {self.model_config.name!r} (fingerprint "
                f"{self.fingerprint}); open the store with the model it was written with"
            )

    @_locked
    def load_module(self, info: ModuleInfo, pinned: set[str] | None = None) -> str:
        """Load a module version as a named adapter (from disk only on a cache miss); returns the adapter name."""
        self._ensure_model()
        self._check_base(info)
        name = f"{_adapter_stem(info.module_id)}__v{info.version}"
        if self._loaded.get(info.module_id) == name and self._adapter_sha.get(name) == info.sha256:
            self.cache_stats["hits"] += 1
            self._touch(info.module_id, name, pinned or set())
            return name
        self.cache_stats["misses"] += 1
        from peft import LoraConfig, set_peft_model_state_dict

        cfg_dict, state = self.store.load_adapter(info)
        cfg_dict = {k: v for k, v in cfg_dict.items() if k in LoraConfig.__dataclass_fields__}
        cfg = LoraConfig(**cfg_dict)
        cfg.inference_mode = True
        old = self._loaded.get(info.module_id)
        if old:
            self._remove_adapter(old)
        self._add_adapter(name, cfg)
        result = set_peft_model_state_dict(self._peft, state, adapter_name=name)
        missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
        if missing:
            self._remove_adapter(name)
            raise ValueError(f"module {info.module_id}: adapter weights do not fit this model: {missing[:3]}")
        self._adapter_sha[name] = info.sha256
        self._touch(info.module_id, name, pinned or set())
        return name

    @_locked
    def merged(self, infos: Sequence[ModuleInfo], method: str | None = None, pinned: set[str] | None = None) -> str:
        """Merge module versions into one adapter with peft's ``add_weighted_adapter``; cached by module set.

        ``method``: linear (weights 1/k, same ranks), ties / dare_ties / dare_linear (density 0.5, weights 1),
        cat (concatenation: the exact sum of the modules' updates), svd (the sum, truncated to the largest rank).
        """
        strict = method is not None  # an explicit method is honoured or refused, the default may fall back
        method = method or self.read_config.merge
        if method not in MERGE_METHODS:
            raise ValueError(f"merge: expected one of {MERGE_METHODS}, got {method!r}")
        if len(infos) == 1:
            return self.load_module(infos[0], pinned)
        if any(i.lora_spec.get("use_dora") for i in infos):
            raise ValueError("merging DoRA modules is not supported (their magnitude vectors do not add up); "
                             "route each question to one module instead (top_k=1)")
        ranks = {int(i.lora_spec.get("r", 0)) * (2 if i.lora_spec.get("init") == "pissa" else 1) for i in infos}
        if method in ("linear", "ties", "dare_ties", "dare_linear") and len(ranks) > 1:
            if strict:
                raise ValueError(f"merge {method!r} needs modules of one rank, got ranks {sorted(ranks)}; use 'cat' or 'svd'")
            import warnings

            warnings.warn(f"merge {method!r} needs modules of one rank (got {sorted(ranks)}): merging with 'cat'",
                          stacklevel=3)
            method = "cat"
        key = f"merge:{method}:" + "+".join(sorted(f"{i.module_id}@v{i.version}" for i in infos))
        name = self._loaded.get(key)
        if name is not None:
            self.cache_stats["hits"] += 1
            self._touch(key, name, pinned or set())
            return name
        self.cache_stats["misses"] += 1
        import hashlib

        pinned = set(pinned or ())
        names = []
        for info in infos:
            names.append(self.load_module(info, pinned))
            pinned.add(names[-1])
        name = "merged__" + hashlib.sha1(key.encode()).hexdigest()[:12]
        k = len(names)
        kwargs: dict[str, Any] = {"combination_type": method, "weights": [1.0 / k if method == "linear" else 1.0] * k}
        if method in ("ties", "dare_ties", "dare_linear"):
            kwargs["density"] = 0.5
        if method == "ties":
            kwargs["majority_sign_method"] = "total"
        if method == "svd":
            kwargs["svd_rank"] = max(ranks)
        import torch

        try:
            with torch.random.fork_rng():  # DARE drops at random: seeded, so a merged set is the same every time
                torch.manual_seed(0)
                self._peft.add_weighted_adapter(adapters=names, adapter_name=name, **kwargs)
        except BaseException:
            self._remove_adapter(name)  # a half-built adapter would be reused by peft next time
            raise
        # The weights (and their scalings) are folded into the merged A and B; peft gives the merged adapter
        # alpha = its rank, which is a scaling of 1 except with rsLoRA (sqrt(r)): make it 1 in every case.
        for module in self._peft.modules():
            scaling = getattr(module, "scaling", None)
            if isinstance(scaling, dict) and name in scaling:
                scaling[name] = 1.0
        self._touch(key, name, pinned)
        return name

    # --- writing ---------------------------------------------------------------------------------------------

    @_locked
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
        """
        items = _as_items(items)
        check_namespace(namespace)
        if module is not None:
            check_namespace(module)
        tcfg = train or self.train_config
        scfg = synth or self.synth_config
        self._ensure_model()
        t_start = time.perf_counter()
        with self.store.write_lock():
            lock_wait = time.perf_counter() - t_start
            current = self.store.modules(namespace)
            for info in current:
                self._check_base(info)
            held = {i: m.module_id for m in current for i in self.store.module_items(m.module_id, m.version)}
            new = [it for it in _dedupe(items) if it.id not in held]
            if module is not None:
                mine = [m for m in current if m.module_id == module]
                if not mine and any(m.module_id == module for m in self.store.modules()):
                    raise ValueError(f"module {module!r} belongs to another namespace than {namespace!r}")
                new = [it for it in new if held.get(it.id) != module]
            if not new:
                target = [m for m in current if module is None or m.module_id == module]
                if target:
                    return _noop_report(target[0], namespace, time.perf_counter() - t_start)
                others = sorted({held[it.id] for it in items if it.id in held})
                raise ValueError(f"every item is already held by module(s) {others} of namespace {namespace!r}; "
                                 f"forget() them there first to move them to module {module!r}")

            from .synth import synthesize

            t0 = time.perf_counter()
            new_examples = synthesize(new, scfg, llm=llm) if new else []
            synth_s = time.perf_counter() - t0
            if module is not None:
                dest = next((m for m in current if m.module_id == module), None)
                assignments = [Assignment(dest, module, lora or self.lora, new, f"module={module} given")]
            else:
                assignments = self._plan(namespace, current, new, new_examples, lora, split)
            reports = []
            for a in assignments:
                examples = [e for e in new_examples if e.item_id in {it.id for it in a.items}]
                reports.append(self._write_module(namespace, a, examples, tcfg, scfg))
        return _combine(reports, lock_wait, synth_s, time.perf_counter() - t_start)

    def _plan(
        self,
        namespace: str,
        current: list[ModuleInfo],
        new: list[Item],
        new_examples: list[Any],
        lora: LoraSpec | None,
        split: bool | None,
    ) -> list[Assignment]:
        """Which module each new item goes to (see ``loramem.plan``)."""
        from .plan import plan_write

        use = self.plan_config.split if split is None else split
        capacity = self.capacity if use else None
        return plan_write(self, namespace, current, new, new_examples, lora, capacity)

    def _write_module(
        self, namespace: str, a: Assignment, new_examples: list[Any], tcfg: TrainConfig, scfg: SynthConfig,
        *, fresh: bool = False, keep: list[str] | None = None, removed: list[str] | None = None,
    ) -> WriteReport:
        """Train and commit one module version holding its previous items (or ``keep``) plus ``a.items``.

        ``fresh``: start from new adapter weights instead of the previous version's (rebuilds after a delete).
        """
        t_start = time.perf_counter()
        info = a.info
        spec = a.spec
        held = set(keep) if keep is not None else set(self.store.module_items(info.module_id, info.version)) if info else set()
        old_examples = self.store.examples(namespace, sorted(held))
        examples = old_examples + new_examples
        module_id = a.module_id or self.store.new_module_id(namespace)
        if info is not None and info.lora_spec != spec.to_dict():
            spec = LoraSpec.from_dict(info.lora_spec)  # a module keeps the spec it was created with
        warm = info is not None and spec.init != "pissa" and not fresh
        prev_state = self.store.load_adapter(info)[1] if warm and info is not None else None
        t0 = time.perf_counter()
        state, peft_cfg, result, trainable = self._train_module(module_id, spec, tcfg, examples, prev_state)
        train_wall = time.perf_counter() - t0

        from .train import count_knowledge_tokens

        knowledge = count_knowledge_tokens(examples, self._prompt)
        report_fields = {
            "steps": result.steps,
            "epochs": round(result.epochs, 3),
            "tokens_trained": result.tokens_trained,
            "train_seconds": round(result.train_seconds, 3),
            "eval_seconds": round(result.eval_seconds, 3),
            "padding_fraction": round(result.padding_fraction, 4),
            "reached_target": result.reached_target,
            "target_recall": tcfg.target_recall,
            "train_config": tcfg.to_dict(),
            "synth_config": scfg.to_dict(),
            "plan": a.reason,
            **({"removed": removed} if removed else {}),
        }
        t0 = time.perf_counter()
        version = self.store.commit_version(
            module_id=module_id,
            namespace=namespace,
            adapter_config=peft_cfg,
            state=state,
            base_model=self.model_config.name,
            base_fingerprint=self.fingerprint,
            lora_spec=spec.to_dict(),
            trainable_params=trainable,
            knowledge_tokens=knowledge,
            recall=result.recall,
            report=report_fields,
            new_items=a.items,
            new_examples=new_examples,
            held_item_ids=sorted(held | {it.id for it in a.items}),
        )
        save_s = time.perf_counter() - t0
        self._forget_keys(module_id)
        return WriteReport(
            namespace=namespace,
            module_id=module_id,
            version=version,
            items_written=len(a.items),
            items_total=len(held) + len(a.items),
            examples=len([e for e in examples if e.format != "probe"]),
            steps=result.steps,
            epochs=result.epochs,
            tokens_trained=result.tokens_trained,
            knowledge_tokens=knowledge,
            recall=result.recall,
            reached_target=result.reached_target,
            seconds=time.perf_counter() - t_start,
            tokens_per_second=result.tokens_per_second,
            trainable_params=trainable,
            timings={
                "train": result.train_seconds,
                "recall_checks": result.eval_seconds,
                "train_wall": train_wall,
                "save": save_s,
            },
        )

    def _train_module(
        self,
        module_id: str,
        spec: LoraSpec,
        tcfg: TrainConfig,
        examples: list[Any],
        prev_state: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], Any, Any, int]:
        """Train a fresh adapter (from the previous version's weights when given). Returns what to store."""
        import torch
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        from .train import peft_config, pissa_to_lora, train

        name = f"{_adapter_stem(module_id)}__training"
        torch.manual_seed(tcfg.seed)
        cfg = peft_config(self._base if self._peft is None else self._peft.get_base_model(), spec)
        snapshot = self._snapshot_linear() if spec.init == "pissa" else None
        self._add_adapter(name, cfg)
        try:
            if prev_state is not None:
                set_peft_model_state_dict(self._peft, prev_state, adapter_name=name)
            initial = get_peft_model_state_dict(self._peft, adapter_name=name) if snapshot is not None else None
            initial = {k: v.clone() for k, v in initial.items()} if initial else None
            self._peft.set_adapter(name)
            trainable = 0
            for pname, p in self._peft.named_parameters():
                mine = f".{name}." in pname or pname.endswith(f".{name}")
                p.requires_grad_(mine)
                trainable += p.numel() if mine else 0
            result = train(self._peft, self._prompt, examples, tcfg, adapter_name=name, desc=f"write {module_id}")
            state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self._peft, adapter_name=name).items()}
            saved_cfg = self._peft.peft_config[name]
            if snapshot is not None and initial is not None:
                # PiSSA changed the base weights; put them back and store the adapter as plain LoRA (rank 2r).
                self._restore_linear(snapshot)
                state = pissa_to_lora(state, initial)
                scale = spec.lora_alpha / (spec.r**0.5 if spec.use_rslora else spec.r)
                saved_cfg = peft_config(self._peft.get_base_model(), spec)
                saved_cfg.r = 2 * spec.r
                saved_cfg.lora_alpha = scale * 2 * spec.r
                saved_cfg.use_rslora = False
                saved_cfg.init_lora_weights = True
        except BaseException:
            if snapshot is not None:
                self._restore_linear(snapshot)
            self._remove_adapter(name)
            raise
        self._remove_adapter(name)
        from .models import ALIASES

        alias = ALIASES.get(self.model_config.name)
        saved_cfg.base_model_name_or_path = alias.hub_id if alias else self.model_config.name
        saved_cfg.inference_mode = True
        return state, saved_cfg, result, trainable

    def _snapshot_linear(self) -> dict[str, Any]:
        import torch

        base = self._base if self._peft is None else self._peft.get_base_model()
        return {
            _unwrapped(n): m.weight.detach().clone()
            for n, m in base.named_modules()
            if isinstance(m, torch.nn.Linear) and "lora_" not in n and "lm_head" not in n
        }

    def _restore_linear(self, snapshot: dict[str, Any]) -> None:
        import torch

        base = self._base if self._peft is None else self._peft.get_base_model()
        with torch.no_grad():
            for n, m in base.named_modules():
                key = _unwrapped(n)
                if isinstance(m, torch.nn.Linear) and key in snapshot:
                    m.weight.copy_(snapshot[key])

    # --- reading ---------------------------------------------------------------------------------------------

    @overload
    def ask(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]; str wins
        self, question: str, namespace: str | None = ..., *, module: str | None = ...,
        modules: Sequence[str | Sequence[str] | None] | None = ..., route: str | None = ...,
        top_k: int | None = ..., threshold: float | None = ..., merge: str | None = ...,
        context: str | Sequence[str | None] | None = ..., max_new_tokens: int | None = ...,
    ) -> Answer: ...
    @overload
    def ask(
        self, question: Sequence[str], namespace: str | None = ..., *, module: str | None = ...,
        modules: Sequence[str | Sequence[str] | None] | None = ..., route: str | None = ...,
        top_k: int | None = ..., threshold: float | None = ..., merge: str | None = ...,
        context: str | Sequence[str | None] | None = ..., max_new_tokens: int | None = ...,
    ) -> list[Answer]: ...

    @_locked
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
    ) -> Answer | list[Answer]:
        """Answer one question or a list (batched) with the right module(s) active.

        Which modules answer: ``namespace=None`` the bare base model; ``module`` one module id for every
        question; ``modules`` one entry per question (a module id, a list of ids to merge, or None for the bare
        model: oracle routing); otherwise the namespace's module, or, when it has several, the router
        (``route``, default ``ReadConfig.route``: ``embedding``, top-``top_k`` above ``threshold``; a question
        no module reaches is answered by the bare model). Questions routed to different modules share one
        generation pass (peft mixed-adapter batches); a question routed to several modules gets them merged
        (``merge``: ties, linear, dare_ties, dare_linear, cat, svd), cached per module set.
        ``context`` puts text in the prompt before the question (RAG/ICL on top of the memory).
        """
        single = isinstance(question, str)
        questions: list[str] = [question] if isinstance(question, str) else list(question)
        if not questions or any(not isinstance(q, str) or not q.strip() for q in questions):
            raise ValueError(f"question: expected a non-empty string or list of them, got {question!r:.80}")
        contexts = _per_question("context", context, len(questions))
        self._ensure_model()
        routes, routed = self._select(questions, namespace, module, modules, route, top_k, threshold)
        answers = self._generate(questions, routes, contexts, max_new_tokens, merge, routed)
        return answers[0] if single else answers

    @_locked
    def recall(self, query: str, k: int = 4, namespace: str | None = "default", *, module: str | None = None,
               max_new_tokens: int | None = None) -> list[Recollection]:
        """What the memory holds about ``query``: exactly ``k`` generated recollections (none for a namespace with
        no module yet), the query first, then the most similar items' stored questions (see ``loramem.recall``)."""
        return _recall(self, query, k, namespace, module=module, max_new_tokens=max_new_tokens)

    # --- routing and activation ------------------------------------------------------------------------------

    def router(self, name: str | None = None, top_k: int | None = None, threshold: float | None = None) -> Any:
        """The router ``name`` (default ``ReadConfig.route``) with its options, made once per memory."""
        from .route import get_router

        cfg = self.read_config
        key = (name or cfg.route, top_k or cfg.top_k, cfg.threshold if threshold is None else threshold)
        if key not in self._routers:
            opts = {"top_k": key[1], "threshold": key[2]} if key[0] == "embedding" else {}
            self._routers[key] = get_router(key[0], self, **opts)
        return self._routers[key]

    def _select(
        self,
        questions: list[str],
        namespace: str | None,
        module: str | None,
        modules: Sequence[str | Sequence[str] | None] | None,
        route: str | None,
        top_k: int | None,
        threshold: float | None,
    ) -> tuple[list[list[tuple[ModuleInfo, float]]], bool]:
        """Per question, the module versions that answer it with their routing scores (empty: bare model),
        and whether a router chose them."""
        if modules is not None:
            if isinstance(modules, str) or len(modules) != len(questions):
                raise ValueError(f"modules: expected a list of {len(questions)} entries (one per question), got {modules!r:.80}")
            by_id: dict[str, ModuleInfo] = {}
            out: list[list[tuple[ModuleInfo, float]]] = []
            for entry in modules:
                ids = [] if entry is None else [entry] if isinstance(entry, str) else list(entry)
                for mid in ids:
                    if mid not in by_id:
                        by_id[mid] = self.store.module(mid)
                out.append([(by_id[mid], 1.0) for mid in ids])
            return out, False
        if module is not None:
            info = self.store.module(module)
            return [[(info, 1.0)] for _ in questions], False
        if namespace is None:
            return [[] for _ in questions], False
        check_namespace(namespace)
        infos = self.store.modules(namespace)
        if not infos and namespace not in self.store.namespaces():
            known = ", ".join(self.store.namespaces()) or "none"
            raise KeyError(f"namespace {namespace!r} holds nothing; namespaces in this store: {known}")
        if len(infos) <= 1 and route is None:
            return [[(i, 1.0) for i in infos] for _ in questions], False
        by_id = {i.module_id: i for i in infos}
        routes = self.router(route, top_k, threshold).route(questions, infos)
        return [[(by_id[mid], score) for mid, score in r] for r in routes], True

    def _adapter_names(self, selection: list[list[tuple[ModuleInfo, float]]], merge: str | None) -> list[str]:
        """One adapter name per question (``__base__`` for none), loading or merging what is missing."""
        wanted = {tuple(sorted(i.module_id for i, _ in sel)) for sel in selection}
        pinned: set[str] = set()
        names: dict[tuple[str, ...], str] = {(): BASE}
        for key in sorted(wanted):
            if not key:
                continue
            infos = [next(i for sel in selection for i, _ in sel if i.module_id == mid) for mid in key]
            names[key] = self.merged(infos, merge, pinned) if len(infos) > 1 else self.load_module(infos[0], pinned)
            pinned.add(names[key])
        return [names[tuple(sorted(i.module_id for i, _ in sel))] for sel in selection]

    @contextlib.contextmanager
    def _activate(self, names: list[str]) -> Iterator[dict[str, Any]]:
        """Make the model answer with ``names`` (one per row); yields extra kwargs for generate/forward.

        One adapter for every row: it is set active (no per-row overhead). Several: peft's mixed-adapter batch
        (``adapter_names=``), one pass for all rows.
        """
        distinct = set(names)
        if distinct == {BASE} or self._peft is None:
            with self.disabled():
                yield {}
        elif len(distinct) == 1:
            self._peft.set_adapter(names[0])
            yield {}
        elif self.read_config.mixed_batches and not any(
            getattr(self._peft.peft_config.get(n), "use_dora", False) for n in distinct
        ):  # (peft refuses adapter_names with DoRA adapters: those take one pass per adapter)
            yield {"adapter_names": list(names)}
        else:
            yield {"by_adapter": list(names)}

    def _read_config(self, max_new_tokens: int | None) -> ReadConfig:
        cfg = self.read_config
        if max_new_tokens is None:
            return cfg
        return ReadConfig.from_dict({**cfg.to_dict(), "max_new_tokens": max_new_tokens})

    def _run(self, names: list[str], fn: Callable[[list[int], dict[str, Any]], list[Any]], n: int) -> list[Any]:
        """Call ``fn(rows, kwargs)`` with the adapters active: once (one adapter or a mixed batch), or once per
        adapter when mixed batches are off."""
        with self._activate(names) as kw:
            if "by_adapter" not in kw:
                return fn(list(range(n)), kw)
        out: list[Any] = [None] * n
        for name in sorted(set(names)):
            rows = [i for i in range(n) if names[i] == name]
            with self._activate([name] * len(rows)) as kw2:
                for i, value in zip(rows, fn(rows, kw2)):
                    out[i] = value
        return out

    def _answers(self, questions: list[str], selection: list[list[tuple[ModuleInfo, float]]], outs: list[Any],
                 load_s: float, reader: str, routed: bool = False) -> list[Answer]:
        answers = []
        for q, sel, g in zip(questions, selection, outs):
            details: dict[str, Any] = {}
            if routed:
                details["route"] = [[i.module_id, round(score, 4)] for i, score in sel]
            answers.append(Answer(
                question=q, text=g.text, modules=[i.module_id for i, _ in sel],
                reader=reader if sel else reader.replace("lora", "base"),
                timings={"generate": g.seconds, "load": load_s / max(1, len(questions))},
                usage={"input_tokens": g.input_tokens, "output_tokens": g.output_tokens}, details=details,
            ))
        return answers

    def _generate(
        self,
        questions: list[str],
        selection: list[list[tuple[ModuleInfo, float]]],
        contexts: list[str | None] | None,
        max_new_tokens: int | None,
        merge: str | None,
        routed: bool = False,
    ) -> list[Answer]:
        from .read import generate_texts

        t0 = time.perf_counter()
        names = self._adapter_names(selection, merge)
        load_s = time.perf_counter() - t0
        texts = [self._prompt.prompt(q, None if contexts is None else contexts[i]) for i, q in enumerate(questions)]
        cfg = self._read_config(max_new_tokens)
        out = self._run(names, lambda rows, kw: generate_texts(
            self.model, self._prompt, [texts[i] for i in rows], cfg, **kw), len(texts))
        reader = "lora" + ("+context" if contexts is not None else "")
        return self._answers(questions, selection, out, load_s, reader, routed)

    @_locked
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
        if reduce not in ("sum", "first", "mean"):
            raise ValueError(f"reduce: expected 'sum', 'first' or 'mean', got {reduce!r}")
        questions = list(questions)
        if len(candidates) != len(questions):
            raise ValueError(f"candidates: expected {len(questions)} lists (one per question), got {len(candidates)}")
        contexts = _per_question("context", context, len(questions)) or [None] * len(questions)
        self._ensure_model()
        from .read import answer_logprobs

        selection, _ = self._select(questions, namespace, module, modules, route, None, None)
        q_names = self._adapter_names(selection, merge)
        pairs, names = [], []
        for q, c, cands, name in zip(questions, contexts, candidates, q_names):
            for cand in cands:
                pairs.append((self._prompt.prompt(q, c), cand))
                names.append(name)
        flat = self._run(names, lambda rows, kw: answer_logprobs(
            self.model, self._prompt.tokenizer, [pairs[i] for i in rows], self.read_config.batch_size, reduce, **kw),
            len(pairs))
        out: list[list[float]] = []
        for cands in candidates:
            out.append(flat[: len(cands)])
            flat = flat[len(cands) :]
        return out

    @_locked
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
        self._ensure_model()
        if not conversations:
            raise ValueError("conversations: expected at least one conversation, got none")
        texts = [self._prompt.render(list(c)) for c in conversations]
        last = [next((m["content"] for m in reversed(c) if m["role"] == "user"), "") or "?" for c in conversations]
        return self._continue(texts, last, namespace, module, max_new_tokens, stop)

    @_locked
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
        self._ensure_model()
        if not prompts or any(not isinstance(p, str) or not p for p in prompts):
            raise ValueError(f"prompts: expected a non-empty list of non-empty strings, got {prompts!r:.80}")
        return self._continue(list(prompts), list(prompts), namespace, module, max_new_tokens, stop)

    def _continue(
        self,
        texts: list[str],
        questions: list[str],
        namespace: str | None,
        module: str | None,
        max_new_tokens: int | None,
        stop: Sequence[str] | None,
    ) -> list[Answer]:
        from .read import generate_texts

        t0 = time.perf_counter()
        selection, routed = self._select(questions, namespace, module, None, None, None, None)
        names = self._adapter_names(selection, None)
        load_s = time.perf_counter() - t0
        cfg = self._read_config(max_new_tokens)
        out = self._run(names, lambda rows, kw: generate_texts(
            self.model, self._prompt, [texts[i] for i in rows], cfg, stop=stop, **kw), len(texts))
        return self._answers(questions, selection, out, load_s, "lora", routed)

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
        from .read import stream_text

        with self._lock:
            self._ensure_model()
            text = self._prompt.render(list(conversation))
            last = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "") or "?"
            selection, _ = self._select([last], namespace, module, None, None, None, None)  # errors surface here
            model = self.model

        def locked_generate(**kwargs: Any) -> None:
            # Runs on the generation thread: it owns the lock for the whole generation, so no other call can
            # switch or evict the adapter mid-stream, whichever thread(s) the consumer reads the stream from.
            with self._lock:
                names = self._adapter_names(selection, None)
                with self._activate(names):
                    self.model.generate(**kwargs)

        yield from stream_text(model, self._prompt, text, self._read_config(max_new_tokens), stop=stop,
                               generate=locked_generate)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Answer with the bare base model inside this block (like peft's ``disable_adapter``)."""
        self._ensure_model()
        if self._peft is None:
            yield
        else:
            with self._peft.disable_adapter():
                yield

    # --- inspection and forgetting ---------------------------------------------------------------------------

    def ls(self, namespace: str | None = None) -> list[ModuleInfo]:
        """Modules (active versions) with rank, knowledge tokens held and measured recall."""
        return self.store.modules(namespace)

    def namespaces(self) -> list[str]:
        return self.store.namespaces()

    def items(self, namespace: str = "default") -> list[Item]:
        return self.store.items(check_namespace(namespace))

    def fill(self, info: ModuleInfo) -> tuple[int, int | None]:
        """(knowledge tokens held, capacity at its rank) of a module; capacity None without a capacity model."""
        cap = self.capacity
        return info.knowledge_tokens, (cap.capacity(int(info.lora_spec.get("r", 0))) if cap is not None else None)

    @property
    def capacity(self) -> CapacityModel | None:
        """The capacity model the planner uses: ``<store>/capacity.json`` if calibrated for this base model, else
        the one shipped for the embedded model, else None. Assign to override (``mem.capacity = model``)."""
        if self._capacity is False:
            found: CapacityModel | None = None
            local = self.store.root / "capacity.json"
            candidates = [CapacityModel.load(local)] if local.exists() else []
            shipped = CapacityModel.shipped(self.model_config.name)
            candidates += [shipped] if shipped is not None else []
            for cm in candidates:
                if cm.base_fingerprint in (None, self.fingerprint):
                    found = cm
                    break
            self._capacity = found
        return self._capacity if isinstance(self._capacity, CapacityModel) else None

    @capacity.setter
    def capacity(self, model: CapacityModel | None) -> None:
        self._capacity = model

    @_locked
    def forget_namespace(self, namespace: str) -> list[str]:
        """Drop a namespace: its modules and the items kept for it. Returns the dropped module ids."""
        check_namespace(namespace)
        if namespace not in self.store.namespaces():
            raise KeyError(f"namespace {namespace!r} holds nothing; namespaces: {', '.join(self.store.namespaces()) or 'none'}")
        with self.store.write_lock():
            dropped = self.store.forget_namespace(namespace)
        for mid in dropped:
            self._unload(mid)
        return dropped

    def _unload(self, module_id: str) -> None:
        if module_id in self._loaded:
            self._remove_adapter(self._loaded[module_id])
        for key in [k for k in self._loaded if k.startswith("merge:") and f"{module_id}@v" in k]:
            self._remove_adapter(self._loaded[key])
        self._forget_keys(module_id)

    def _forget_keys(self, module_id: str) -> None:
        for router in self._routers.values():
            if hasattr(router, "forget"):
                router.forget(module_id)

    @_locked
    def forget(self, item_ids: str | Sequence[str], namespace: str = "default", *, verify: bool = True) -> WriteReport | None:
        """Delete items: only the modules holding them are rebuilt, from the items they keep (new versions;
        old versions stay until ``gc``). The rebuild starts from fresh weights, so nothing of a deleted item
        survives in the adapter. With ``verify`` the report's ``details["verify"]`` measures, on the new
        versions, the deleted items' recall against the bare model's and the kept items' recall.
        Returns None when nothing remains to train (the modules are dropped).
        """
        check_namespace(namespace)
        ids = [item_ids] if isinstance(item_ids, str) else list(item_ids)
        if not ids:
            raise ValueError("item_ids: expected at least one item id, got none")
        self._ensure_model()
        with self.store.write_lock():
            known = {it.id for it in self.store.items(namespace)}
            unknown = [i for i in ids if i not in known]
            if unknown:
                if len(ids) == 1 and ids[0] in self.store.namespaces():
                    raise KeyError(f"{ids[0]!r} is a namespace, not an item id: forget_namespace({ids[0]!r}) drops "
                                   "a namespace (forget(namespace) did in loramem 0.1)")
                raise KeyError(f"namespace {namespace!r} holds no item(s) {unknown[:5]}")
            return self._replace(namespace, set(ids), [], verify)

    forget_items = forget  # loramem 0.1's name for deleting items (its forget(namespace) is forget_namespace)

    @_locked
    def update(
        self,
        items: Fact | Document | Iterable[Fact | Document],
        namespace: str = "default",
        *,
        replaces: str | Sequence[str] | None = None,
        verify: bool = True,
        synth: SynthConfig | None = None,
    ) -> WriteReport:
        """Change facts (or documents): each replaced item is deleted and the new one written in its place,
        rebuilding only the modules that held the old ones (one new version each, from fresh weights).

        An item replaces ``replaces`` (item ids; one item only), else the item of the namespace with the same
        key: a fact with the same subject and relation (and question, if set), a document with the same title.
        With ``verify`` the report's ``details["verify"]`` measures the new values' recall and the old values'
        recall against the bare model's.
        """
        new_items = _as_items(items)
        check_namespace(namespace)
        if replaces is not None and len(new_items) != 1:
            raise ValueError(f"replaces: only with a single item, got {len(new_items)} items")
        self._ensure_model()
        with self.store.write_lock():
            held = self.store.items(namespace)
            pairs: list[tuple[Item, set[str]]] = []
            for item in new_items:
                if replaces is not None:
                    old_ids = {replaces} if isinstance(replaces, str) else set(replaces)
                    unknown = old_ids - {it.id for it in held}
                    if unknown:
                        raise KeyError(f"namespace {namespace!r} holds no item(s) {sorted(unknown)[:5]}")
                else:
                    old_ids = {it.id for it in held if _same_key(it, item)}
                    if not old_ids:
                        raise KeyError(
                            f"namespace {namespace!r} holds no item with the key of {_key_text(item)}; "
                            "use write() to add it, or pass replaces=<item id>"
                        )
                old_ids.discard(item.id)  # already this value: nothing to replace
                if old_ids:
                    pairs.append((item, old_ids))
            if not pairs:
                info = next(iter(self.store.modules(namespace)), None)
                if info is None:
                    raise KeyError(f"namespace {namespace!r} has no module")
                return _noop_report(info, namespace, 0.0)
            from .synth import synthesize

            scfg = synth or self.synth_config
            added = [(item, synthesize([item], scfg), old) for item, old in pairs]
            removed = set().union(*(old for _, old in pairs))
            return self._replace(namespace, removed, added, verify)  # type: ignore[return-value]

    def _replace(
        self, namespace: str, removed: set[str], added: list[tuple[Item, list[Any], set[str]]], verify: bool
    ) -> WriteReport | None:
        """Rebuild every module holding a removed item without it; an added item goes where its old one was."""
        t_start = time.perf_counter()
        infos = [m for m in self.store.modules(namespace)
                 if removed & set(self.store.module_items(m.module_id, m.version))]
        for info in infos:
            self._check_base(info)
        removed_examples = self.store.examples(namespace, sorted(removed))
        reports: list[WriteReport] = []
        holders = {m.module_id: set(self.store.module_items(m.module_id, m.version)) for m in infos}
        placed: set[str] = set()
        for info in infos:
            keep = [i for i in holders[info.module_id] if i not in removed]
            extra = [a for a in added if a[0].id not in placed and a[2] & holders[info.module_id]]
            placed |= {a[0].id for a in extra}
            if not keep and not extra:
                self.store.drop_module(info.module_id)
                self._unload(info.module_id)
                continue
            reports.append(self._rebuild(info, namespace, keep, sorted(removed), extra))
        homeless = [a for a in added if a[0].id not in placed]
        if homeless:  # the old item was kept but in no module (its module was dropped): the planner places it
            new_items = [it for it, _, _ in homeless]
            new_examples = [e for _, ex, _ in homeless for e in ex]
            for a in self._plan(namespace, self.store.modules(namespace), new_items, new_examples, None, None):
                mine = {i.id for i in a.items}
                reports.append(self._write_module(namespace, a, [e for e in new_examples if e.item_id in mine],
                                                  self.train_config, self.synth_config))
        self.store.remove_items(namespace, sorted(removed))
        if not reports:
            return None
        report = _combine(reports, 0.0, 0.0, time.perf_counter() - t_start)
        if verify:
            report.details["verify"] = self._verify(namespace, reports, removed_examples, added)
        return report

    def _rebuild(
        self, info: ModuleInfo, namespace: str, keep: list[str], removed: list[str],
        added: list[tuple[Item, list[Any], set[str]]],
    ) -> WriteReport:
        spec = LoraSpec.from_dict(info.lora_spec)
        a = Assignment(info, info.module_id, spec, [it for it, _, _ in added], f"rebuild without {len(removed)} item(s)")
        new_examples = [e for _, ex, _ in added for e in ex]
        # Fresh weights: training from the old version would carry the removed items over.
        return self._write_module(namespace, a, new_examples, self.train_config, self.synth_config,
                                  fresh=True, keep=keep, removed=removed)

    def _verify(
        self, namespace: str, reports: list[WriteReport], removed_examples: list[Any],
        added: list[tuple[Item, list[Any], set[str]]],
    ) -> dict[str, Any]:
        """Measure, not assume: recall (teacher-forced exact match, = greedy) of removed and added items on the
        rebuilt modules, next to the bare model's recall of the same probes."""
        from .train import encode_all, exact_recall

        tcfg = self.train_config
        pad = self._prompt.tokenizer.pad_token_id
        pad = pad if pad is not None else 0

        def recall(examples: list[Any], adapter: str | None) -> float | None:
            probes = [e for e in examples if e.probe]
            if not probes:
                return None
            enc = encode_all(probes, self._prompt, tcfg.seq_len)
            with self._activate([adapter or BASE]):
                hits = exact_recall(self.model, enc, tcfg.seq_len, tcfg.batch_tokens, pad)
            return sum(hits) / len(hits)

        out: dict[str, Any] = {"modules": [r.module_id for r in reports], "kept_recall": min(r.recall for r in reports)}
        pinned: set[str] = set()
        adapters = []
        for r in reports:  # pinned: a small cache budget must not evict one while the next loads
            adapters.append(self.load_module(self.store.module(r.module_id), pinned))
            pinned.add(adapters[-1])
        if removed_examples:
            out["removed_recall"] = max(recall(removed_examples, a) or 0.0 for a in adapters)
            out["removed_base_recall"] = recall(removed_examples, None)
        if added:
            out["added_recall"] = min((
                recall([e for _, ex, _ in added for e in ex if e.item_id in held], a) or 0.0
                for a, held in ((a, set(self.store.module_items(r.module_id, r.version))) for a, r in zip(adapters, reports))
                if any(it.id in held for it, _, _ in added)
            ), default=0.0)
        # No slack: the rebuilt modules recall no more of the removed items than the bare model does.
        ok = out.get("removed_recall", 0.0) <= (out.get("removed_base_recall") or 0.0)
        ok = ok and all(r.reached_target for r in reports)
        if added:
            ok = ok and (out["added_recall"] or 0.0) >= self.train_config.target_recall
        out["passed"] = bool(ok)
        return out

    @_locked
    def drop(self, module_id: str) -> None:
        """Drop one module (its items stay kept and can be written again)."""
        with self.store.write_lock():
            self.store.drop_module(module_id)
        self._unload(module_id)

    @_locked
    def gc(self) -> int:
        """Delete old module versions and leftovers of interrupted writes; returns folders removed."""
        with self.store.write_lock():
            removed = self.store.gc()
            active = {f"{i.module_id}__v{i.version}__{i.sha256[:12]}.npy" for i in self.store.modules()}
            router = self.store.root / "router"
            for f in router.glob("*.npy") if router.exists() else []:
                if f.name not in active:  # the embedding router's keys of versions that are gone
                    f.unlink(missing_ok=True)
                    removed.append(f)
            return len(removed)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> KnowledgeMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeMemory({str(self.store.root)!r}, model={self.model_config.name!r})"


def _as_items(items: Any) -> list[Item]:
    if isinstance(items, (Fact, Document)):
        return [items]
    if isinstance(items, (str, bytes)):
        raise TypeError("items: expected Fact/Document objects, got a string; wrap text in Document(text=...)")
    try:
        out = list(items)
    except TypeError:
        raise TypeError(f"items: expected a Fact, a Document or a list of them, got {type(items).__name__}") from None
    if not out:
        raise ValueError("items: expected at least one Fact or Document, got an empty list")
    for i, it in enumerate(out):
        if not isinstance(it, (Fact, Document)):
            raise TypeError(f"items[{i}]: expected Fact or Document, got {type(it).__name__}: {it!r:.60}")
    return out


def _dedupe(items: list[Item]) -> list[Item]:
    seen: dict[str, Item] = {}
    for it in items:
        seen.setdefault(it.id, it)
    return list(seen.values())


def _unwrapped(name: str) -> str:
    """A linear layer's name with peft's wrapper suffix removed (``q_proj.base_layer`` -> ``q_proj``)."""
    return name[: -len(".base_layer")] if name.endswith(".base_layer") else name


def _adapter_stem(module_id: str) -> str:
    """A peft adapter name for a module id (torch module names cannot contain '.')."""
    import re

    stem = re.sub(r"[^A-Za-z0-9_-]", "_", module_id)
    if stem != module_id:
        import hashlib

        stem += "_" + hashlib.sha1(module_id.encode()).hexdigest()[:6]
    return stem


def _per_question(name: str, value: str | Sequence[str | None] | None, n: int) -> list[str | None] | None:
    if value is None:
        return None
    out: list[str | None] = [value] * n if isinstance(value, str) else list(value)
    if len(out) != n:
        raise ValueError(f"{name}: expected {n} entries (one per question), got {len(out)}")
    return out


def _same_key(old: Item, new: Item) -> bool:
    """Whether ``new`` is a new value of ``old``: same fact slot, or same document title."""
    if isinstance(old, Fact) and isinstance(new, Fact):
        return (old.subject, old.relation, old.question) == (new.subject, new.relation, new.question)
    if isinstance(old, Document) and isinstance(new, Document):
        return new.title is not None and old.title == new.title
    return False


def _key_text(item: Item) -> str:
    if isinstance(item, Fact):
        return f"subject {item.subject!r} and relation {item.relation!r}"
    return f"title {item.title!r}" if item.title else "an untitled document (pass replaces=)"


def _combine(reports: list[WriteReport], lock_wait: float, synth_s: float, total: float) -> WriteReport:
    """One report for a write that changed several modules (sums; the worst recall; each in ``parts``)."""
    if len(reports) == 1:
        r = reports[0]
        r.seconds = total
        r.timings = {"lock_wait": lock_wait, "synthesize": synth_s, **r.timings}
        return r
    train_s = sum(r.timings.get("train", 0.0) for r in reports)
    tokens = sum(r.tokens_trained for r in reports)
    first = reports[0]
    return WriteReport(
        namespace=first.namespace, module_id=first.module_id, version=first.version,
        items_written=sum(r.items_written for r in reports), items_total=sum(r.items_total for r in reports),
        examples=sum(r.examples for r in reports), steps=sum(r.steps for r in reports),
        epochs=max(r.epochs for r in reports), tokens_trained=tokens,
        knowledge_tokens=sum(r.knowledge_tokens for r in reports), recall=min(r.recall for r in reports),
        reached_target=all(r.reached_target for r in reports), seconds=total,
        tokens_per_second=tokens / train_s if train_s else 0.0,
        trainable_params=sum(r.trainable_params for r in reports),
        timings={"lock_wait": lock_wait, "synthesize": synth_s, "train": train_s}, parts=reports,
    )


def _noop_report(info: ModuleInfo, namespace: str, seconds: float) -> WriteReport:
    return WriteReport(
        namespace=namespace, module_id=info.module_id, version=info.version, items_written=0, items_total=info.items,
        examples=0, steps=0, epochs=0.0, tokens_trained=0, knowledge_tokens=info.knowledge_tokens, recall=info.recall,
        reached_target=True, seconds=seconds, tokens_per_second=0.0, trainable_params=info.trainable_params,
    )
