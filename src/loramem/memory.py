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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

from .config import LoraSpec, ModelConfig, ReadConfig, SynthConfig, TrainConfig
from .store import BaseModelMismatchError, ModuleInfo, ModuleStore, check_namespace
from .types import Answer, Document, Fact, Item, WriteReport

ModelArg = str | ModelConfig | tuple[Any, Any]
F = TypeVar("F", bound=Callable[..., Any])


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
        self._loaded: dict[str, str] = {}  # module_id -> adapter name currently loaded ("<id>__v<N>")
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
        lock_timeout: float = 600.0,
    ) -> KnowledgeMemory:
        """Open (or create) the store at ``path``. The model loads on first use, so opening is cheap.

        ``model`` is an alias (default ``smollm2-135m``, the embedded SmolLM2-135M-Instruct), a local Hugging Face
        folder, a hub id, a ``ModelConfig``, or an already loaded ``(model, tokenizer)`` pair.
        """
        return cls(ModuleStore(path, lock_timeout=lock_timeout), model, lora=lora, train=train, synth=synth, read=read)

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
        for mid, loaded in list(self._loaded.items()):
            if loaded == name:
                del self._loaded[mid]

    def _check_base(self, info: ModuleInfo) -> None:
        if info.base_fingerprint != self.fingerprint:
            raise BaseModelMismatchError(
                f"module {info.module_id} was trained on base model {info.base_model!r} (fingerprint "
                f"{info.base_fingerprint}), but the loaded model is {self.model_config.name!r} (fingerprint "
                f"{self.fingerprint}); open the store with the model it was written with"
            )

    def load_module(self, info: ModuleInfo) -> str:
        """Load a module version as a named adapter (once); returns the adapter name."""
        self._ensure_model()
        self._check_base(info)
        name = f"{info.module_id}__v{info.version}"
        if self._loaded.get(info.module_id) == name:
            return name
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
        self._loaded[info.module_id] = name
        return name

    # --- writing ---------------------------------------------------------------------------------------------

    @_locked
    def write(
        self,
        items: Fact | Document | Iterable[Fact | Document],
        namespace: str = "default",
        *,
        lora: LoraSpec | None = None,
        train: TrainConfig | None = None,
        synth: SynthConfig | None = None,
        llm: Any | None = None,
    ) -> WriteReport:
        """Write items into the namespace's module (creating it, or training a new version of it).

        Items already held are not trained on twice; the new version replays every item the namespace holds.
        ``llm``: a callable or LangChain chat model that writes the training data (off by default).
        """
        items = _as_items(items)
        check_namespace(namespace)
        spec = lora or self.lora
        tcfg = train or self.train_config
        scfg = synth or self.synth_config
        self._ensure_model()
        t_start = time.perf_counter()
        with self.store.write_lock():
            t_locked = time.perf_counter()
            current = self.store.modules(namespace)
            info = current[0] if current else None
            if info is not None:
                self._check_base(info)
            held = set(self.store.module_items(info.module_id, info.version)) if info else set()
            new = [it for it in _dedupe(items) if it.id not in held]
            if not new and info is not None:
                return _noop_report(info, namespace, time.perf_counter() - t_start)

            from .synth import synthesize

            t0 = time.perf_counter()
            new_examples = synthesize(new, scfg, llm=llm)
            old_examples = self.store.examples(namespace, sorted(held))
            synth_s = time.perf_counter() - t0
            examples = old_examples + new_examples
            module_id = info.module_id if info else self.store.new_module_id(namespace)
            if info is not None and info.lora_spec != spec.to_dict():
                spec = LoraSpec.from_dict(info.lora_spec)  # a module keeps the spec it was created with
            prev_state = self.store.load_adapter(info)[1] if info is not None and spec.init != "pissa" else None
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
                new_items=new,
                new_examples=new_examples,
                held_item_ids=sorted(held | {it.id for it in new}),
            )
            save_s = time.perf_counter() - t0
        total = time.perf_counter() - t_start
        return WriteReport(
            namespace=namespace,
            module_id=module_id,
            version=version,
            items_written=len(new),
            items_total=len(held) + len(new),
            examples=len([e for e in examples if e.format != "probe"]),
            steps=result.steps,
            epochs=result.epochs,
            tokens_trained=result.tokens_trained,
            knowledge_tokens=knowledge,
            recall=result.recall,
            reached_target=result.reached_target,
            seconds=total,
            tokens_per_second=result.tokens_per_second,
            trainable_params=trainable,
            timings={
                "lock_wait": t_locked - t_start,
                "synthesize": synth_s,
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

        name = f"{module_id}__training"
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
            n: m.weight.detach().clone()
            for n, m in base.named_modules()
            if isinstance(m, torch.nn.Linear) and "lora_" not in n and "lm_head" not in n
        }

    def _restore_linear(self, snapshot: dict[str, Any]) -> None:
        import torch

        base = self._base if self._peft is None else self._peft.get_base_model()
        with torch.no_grad():
            for n, m in base.named_modules():
                key = n[: -len(".base_layer")] if n.endswith(".base_layer") else n
                if isinstance(m, torch.nn.Linear) and key in snapshot:
                    m.weight.copy_(snapshot[key])

    # --- reading ---------------------------------------------------------------------------------------------

    @overload
    def ask(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]; str wins
        self, question: str, namespace: str | None = ..., *, module: str | None = ...,
        context: str | Sequence[str | None] | None = ..., max_new_tokens: int | None = ...,
    ) -> Answer: ...
    @overload
    def ask(
        self, question: Sequence[str], namespace: str | None = ..., *, module: str | None = ...,
        context: str | Sequence[str | None] | None = ..., max_new_tokens: int | None = ...,
    ) -> list[Answer]: ...

    @_locked
    def ask(
        self,
        question: str | Sequence[str],
        namespace: str | None = "default",
        *,
        module: str | None = None,
        context: str | Sequence[str | None] | None = None,
        max_new_tokens: int | None = None,
    ) -> Answer | list[Answer]:
        """Answer one question or a list (batched), with the namespace's module active.

        ``namespace=None`` answers with the bare base model; ``module`` picks a module id explicitly;
        ``context`` puts text in the prompt before the question (RAG/ICL on top of the memory).
        """
        single = isinstance(question, str)
        questions: list[str] = [question] if isinstance(question, str) else list(question)
        if not questions or any(not isinstance(q, str) or not q.strip() for q in questions):
            raise ValueError(f"question: expected a non-empty string or list of them, got {question!r:.80}")
        contexts: list[str | None] | None = None
        if context is not None:
            contexts = [context] * len(questions) if isinstance(context, str) else list(context)
            if len(contexts) != len(questions):
                raise ValueError(f"context: expected {len(questions)} entries, got {len(contexts)}")
        self._ensure_model()
        infos = self._resolve(namespace, module)
        answers = self._generate(questions, infos, contexts, max_new_tokens)
        return answers[0] if single else answers

    def _resolve(self, namespace: str | None, module: str | None) -> list[ModuleInfo]:
        if module is not None:
            return [self.store.module(module)]
        if namespace is None:
            return []
        check_namespace(namespace)
        infos = self.store.modules(namespace)
        if not infos and namespace not in self.store.namespaces():
            known = ", ".join(self.store.namespaces()) or "none"
            raise KeyError(f"namespace {namespace!r} holds nothing; namespaces in this store: {known}")
        return infos[:1]

    def _read_config(self, max_new_tokens: int | None) -> ReadConfig:
        cfg = self.read_config
        if max_new_tokens is None:
            return cfg
        return ReadConfig(max_new_tokens=max_new_tokens, batch_size=cfg.batch_size, progress=cfg.progress)

    @contextlib.contextmanager
    def _active(self, infos: list[ModuleInfo]) -> Iterator[float]:
        """Activate the chosen module (or none: the bare base model); yields the seconds spent loading it."""
        t0 = time.perf_counter()
        if infos:
            adapter = self.load_module(infos[0])
            self._peft.set_adapter(adapter)
            yield time.perf_counter() - t0
        else:
            with self.disabled():
                yield 0.0

    def _answers(self, questions: list[str], infos: list[ModuleInfo], outs: list[Any], load_s: float, reader: str) -> list[Answer]:
        ids = [i.module_id for i in infos]
        return [
            Answer(
                question=q, text=g.text, modules=ids, reader=reader,
                timings={"generate": g.seconds, "load": load_s},
                usage={"input_tokens": g.input_tokens, "output_tokens": g.output_tokens},
            )
            for q, g in zip(questions, outs)
        ]

    def _generate(
        self,
        questions: list[str],
        infos: list[ModuleInfo],
        contexts: list[str | None] | None,
        max_new_tokens: int | None,
    ) -> list[Answer]:
        from .read import generate

        with self._active(infos) as load_s:
            out = generate(self.model, self._prompt, questions, self._read_config(max_new_tokens), contexts=contexts)
        reader = ("lora" if infos else "base") + ("+context" if contexts is not None else "")
        return self._answers(questions, infos, out, load_s, reader)

    @_locked
    def logprobs(
        self,
        questions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        namespace: str | None = "default",
        *,
        module: str | None = None,
        context: str | Sequence[str | None] | None = None,
        reduce: str = "sum",
    ) -> list[list[float]]:
        """Log-probability of each candidate answer given each question, as the chosen module would answer.

        ``reduce``: ``sum`` (the whole answer), ``first`` (its first token, CounterFact's efficacy test) or
        ``mean`` (per token). One forward pass per (question, candidate) pair, batched.
        """
        if reduce not in ("sum", "first", "mean"):
            raise ValueError(f"reduce: expected 'sum', 'first' or 'mean', got {reduce!r}")
        if len(candidates) != len(questions):
            raise ValueError(f"candidates: expected {len(questions)} lists (one per question), got {len(candidates)}")
        contexts: list[str | None] = (
            [None] * len(questions) if context is None
            else [context] * len(questions) if isinstance(context, str) else list(context)
        )
        if len(contexts) != len(questions):
            raise ValueError(f"context: expected {len(questions)} entries, got {len(contexts)}")
        self._ensure_model()
        from .read import answer_logprobs

        pairs = [(self._prompt.prompt(q, c), cand) for q, c, cands in zip(questions, contexts, candidates) for cand in cands]
        with self._active(self._resolve(namespace, module)):
            flat = answer_logprobs(self.model, self._prompt.tokenizer, pairs, self.read_config.batch_size, reduce)
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
        """Next assistant turn for each conversation (lists of {"role", "content"}), batched."""
        self._ensure_model()
        if not conversations:
            raise ValueError("conversations: expected at least one conversation, got none")
        texts = [self._prompt.render(list(c)) for c in conversations]
        last = [next((m["content"] for m in reversed(c) if m["role"] == "user"), "") for c in conversations]
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

        infos = self._resolve(namespace, module)
        with self._active(infos) as load_s:
            out = generate_texts(self.model, self._prompt, texts, self._read_config(max_new_tokens), stop=stop)
        return self._answers(questions, infos, out, load_s, "lora" if infos else "base")

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
            infos = self._resolve(namespace, module)
            for info in infos:
                self.load_module(info)  # load now, so the model object is final before streaming starts
            model = self.model

        def locked_generate(**kwargs: Any) -> None:
            # Runs on the generation thread: it owns the lock for the whole generation, so no other call can
            # switch the adapter mid-stream, whichever thread(s) the consumer reads the stream from.
            with self._lock, self._active(infos):
                model.generate(**kwargs)

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

    @_locked
    def forget(self, namespace: str) -> list[str]:
        """Drop a namespace: its modules and the items kept for it. Returns the dropped module ids."""
        check_namespace(namespace)
        if namespace not in self.store.namespaces():
            raise KeyError(f"namespace {namespace!r} holds nothing; namespaces: {', '.join(self.store.namespaces()) or 'none'}")
        with self.store.write_lock():
            dropped = self.store.forget_namespace(namespace)
        for mid in dropped:
            if mid in self._loaded:
                self._remove_adapter(self._loaded[mid])
        return dropped

    @_locked
    def forget_items(self, item_ids: Sequence[str], namespace: str = "default") -> WriteReport | None:
        """Remove items from a namespace: its module is rebuilt from the items that remain (a new version).

        The rebuild starts from fresh adapter weights, so the removed items are not carried over from the old
        weights. Returns the rebuild's report, or None when nothing remains (the module is dropped).
        """
        check_namespace(namespace)
        ids = [item_ids] if isinstance(item_ids, str) else list(item_ids)
        if not ids:
            raise ValueError("item_ids: expected at least one item id, got none")
        self._ensure_model()
        with self.store.write_lock():
            infos = self.store.modules(namespace)
            known = {it.id for it in self.store.items(namespace)}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise KeyError(f"namespace {namespace!r} holds no item(s) {unknown[:5]}")
            if not infos:
                self.store.remove_items(namespace, ids)
                return None
            info = infos[0]
            self._check_base(info)
            keep = [i for i in self.store.module_items(info.module_id, info.version) if i not in set(ids)]
            if not keep:
                self.store.drop_module(info.module_id)
                self.store.remove_items(namespace, ids)
                if info.module_id in self._loaded:
                    self._remove_adapter(self._loaded[info.module_id])
                return None
            return self._rebuild(info, namespace, keep, removed=ids)

    def _rebuild(self, info: ModuleInfo, namespace: str, keep: list[str], removed: list[str]) -> WriteReport:
        t_start = time.perf_counter()
        spec = LoraSpec.from_dict(info.lora_spec)
        tcfg = self.train_config
        examples = self.store.examples(namespace, keep)
        state, peft_cfg, result, trainable = self._train_module(info.module_id, spec, tcfg, examples, None)
        from .train import count_knowledge_tokens

        knowledge = count_knowledge_tokens(examples, self._prompt)
        version = self.store.commit_version(
            module_id=info.module_id, namespace=namespace, adapter_config=peft_cfg, state=state,
            base_model=self.model_config.name, base_fingerprint=self.fingerprint, lora_spec=spec.to_dict(),
            trainable_params=trainable, knowledge_tokens=knowledge, recall=result.recall,
            report={"steps": result.steps, "tokens_trained": result.tokens_trained, "removed": removed,
                    "reached_target": result.reached_target, "train_seconds": round(result.train_seconds, 3)},
            new_items=[], new_examples=[], held_item_ids=keep,
        )
        self.store.remove_items(namespace, removed)
        return WriteReport(
            namespace=namespace, module_id=info.module_id, version=version, items_written=0, items_total=len(keep),
            examples=len([e for e in examples if e.format != "probe"]), steps=result.steps, epochs=result.epochs,
            tokens_trained=result.tokens_trained, knowledge_tokens=knowledge, recall=result.recall,
            reached_target=result.reached_target, seconds=time.perf_counter() - t_start,
            tokens_per_second=result.tokens_per_second, trainable_params=trainable,
            timings={"train": result.train_seconds, "recall_checks": result.eval_seconds},
        )

    @_locked
    def drop(self, module_id: str) -> None:
        """Drop one module (its items stay kept and can be written again)."""
        with self.store.write_lock():
            self.store.drop_module(module_id)
        if module_id in self._loaded:
            self._remove_adapter(self._loaded[module_id])

    @_locked
    def gc(self) -> int:
        """Delete old module versions and leftovers of interrupted writes; returns folders removed."""
        with self.store.write_lock():
            return len(self.store.gc())

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


def _noop_report(info: ModuleInfo, namespace: str, seconds: float) -> WriteReport:
    return WriteReport(
        namespace=namespace, module_id=info.module_id, version=info.version, items_written=0, items_total=info.items,
        examples=0, steps=0, epochs=0.0, tokens_trained=0, knowledge_tokens=info.knowledge_tokens, recall=info.recall,
        reached_target=True, seconds=seconds, tokens_per_second=0.0, trainable_params=info.trainable_params,
    )
