"""The adapter pool: named peft adapters over one base model (load, add, remove, LRU budget, merge, activate).

Every module version a read needs is loaded here as a named adapter (``<module id>__v<version>``) on one
shared ``PeftModel``; the least recently used ones are evicted past ``ReadConfig.cache_mb``. A question
routed to several modules gets them merged with peft's ``add_weighted_adapter``, cached per module set.
``activate(names)`` makes the model answer with one adapter per row: one active adapter, a peft
mixed-adapter batch (``adapter_names=``), or one pass per adapter. PiSSA training changes the base weights:
``snapshot_linear`` / ``restore_linear`` put them back.

Layer 3: imports the store (module folders) and the config, never the facade.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from .config import MERGE_METHODS, ReadConfig
from .store import BaseModelMismatchError, ModuleInfo, ModuleStore

BASE = "__base__"  # peft's adapter name for "no adapter" in a mixed-adapter batch


class AdapterPool:
    """Adapters on one base model. ``read`` is the live ``ReadConfig`` (cache budget, merge, mixed batches)."""

    def __init__(self, base: Any, store: ModuleStore, *, fingerprint: str, model_name: str,
                 read: Callable[[], ReadConfig], accepted: Collection[str] = ()) -> None:
        self._base = base  # the transformers model (adapters get injected into it)
        self.peft: Any = None  # PeftModel wrapping the base, once a first adapter exists
        self.store = store
        self.fingerprint = fingerprint
        self.accepted = frozenset(accepted) | {fingerprint}  # fingerprints of this base under earlier rules too
        self.model_name = model_name
        self._read = read
        # LRU: module id (or merged-set key) -> adapter name ("<id>__v<N>", "merged__...")
        self._loaded: OrderedDict[str, str] = OrderedDict()
        self._bytes: dict[str, int] = {}
        self._sha: dict[str, str] = {}  # a module id re-created after a drop restarts at v1
        self.stats = {"hits": 0, "misses": 0, "evictions": 0}

    # --- the model ---------------------------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The model to run: the PeftModel once any adapter exists, else the bare base model."""
        return self.peft if self.peft is not None else self._base

    @property
    def base(self) -> Any:
        """The bare transformers model (inside the PeftModel once one exists)."""
        return self._base if self.peft is None else self.peft.get_base_model()

    def add(self, name: str, peft_cfg: Any) -> None:
        from peft import get_peft_model

        if self.peft is None:
            self.peft = get_peft_model(self._base, peft_cfg, adapter_name=name)
        else:
            self.peft.add_adapter(name, peft_cfg)
        self.peft.eval()  # new adapters start in training mode; reads (and mixed batches) need eval mode

    def remove(self, name: str) -> None:
        if self.peft is None or name not in self.peft.peft_config:
            return
        if len(self.peft.peft_config) == 1:
            # peft cannot delete its last adapter: unwrap back to the plain base model instead.
            self._base = self.peft.unload()
            self.peft = None
        else:
            with warnings.catch_warnings():
                # "Adapter X was active which is now deleted": reads always set the adapter they need.
                warnings.simplefilter("ignore", UserWarning)
                self.peft.delete_adapter(name)
        for key, loaded in list(self._loaded.items()):
            if loaded == name:
                del self._loaded[key]
        self._bytes.pop(name, None)
        self._sha.pop(name, None)

    # --- the LRU cache ----------------------------------------------------------------------------------------

    def _size(self, name: str) -> int:
        return sum(p.numel() * p.element_size() for n, p in self.peft.named_parameters() if f".{name}." in n)

    def _touch(self, key: str, name: str, pinned: set[str]) -> None:
        """Mark an adapter most recently used, then evict least recently used ones over the memory budget."""
        self._loaded[key] = name
        self._loaded.move_to_end(key)
        if name not in self._bytes:
            self._bytes[name] = self._size(name)
        budget = int(self._read().cache_mb * 2**20)
        for old_key in list(self._loaded):
            if sum(self._bytes.get(n, 0) for n in set(self._loaded.values())) <= budget:
                break
            old = self._loaded[old_key]
            if old in pinned or old == name:
                continue
            self.remove(old)
            self.stats["evictions"] += 1

    def cache_info(self) -> dict[str, Any]:
        """Loaded adapters (most recent last), their bytes, and hit/miss/eviction counts."""
        return {"loaded": list(self._loaded), "bytes": sum(self._bytes.values()),
                "budget_bytes": int(self._read().cache_mb * 2**20), **self.stats}

    def unload(self, module_id: str) -> None:
        """Remove a module's adapter and every merged adapter it is part of."""
        if module_id in self._loaded:
            self.remove(self._loaded[module_id])
        for key in [k for k in self._loaded if k.startswith("merge:") and f"{module_id}@v" in k]:
            self.remove(self._loaded[key])

    # --- loading and merging ----------------------------------------------------------------------------------

    def check_base(self, info: ModuleInfo) -> None:
        if info.base_fingerprint not in self.accepted:
            raise BaseModelMismatchError(
                f"module {info.module_id} was trained on base model {info.base_model!r} (fingerprint "
                f"{info.base_fingerprint}), but the loaded model is {self.model_name!r} (fingerprint "
                f"{self.fingerprint}); open the store with the model it was written with"
            )

    def load(self, info: ModuleInfo, pinned: set[str] | None = None) -> str:
        """Load a module version as a named adapter (from disk only on a cache miss); returns its name."""
        self.check_base(info)
        name = f"{adapter_stem(info.module_id)}__v{info.version}"
        if self._loaded.get(info.module_id) == name and self._sha.get(name) == info.sha256:
            self.stats["hits"] += 1
            self._touch(info.module_id, name, pinned or set())
            return name
        self.stats["misses"] += 1
        from peft import LoraConfig, set_peft_model_state_dict

        cfg_dict, state = self.store.load_adapter(info)
        cfg = LoraConfig(**{k: v for k, v in cfg_dict.items() if k in LoraConfig.__dataclass_fields__})
        cfg.inference_mode = True
        old = self._loaded.get(info.module_id)
        if old:
            self.remove(old)
        self.add(name, cfg)
        result = set_peft_model_state_dict(self.peft, state, adapter_name=name)
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
        if unexpected:
            self.remove(name)
            raise ValueError(f"module {info.module_id}: adapter weights do not fit this model: {unexpected[:3]}")
        self._sha[name] = info.sha256
        self._touch(info.module_id, name, pinned or set())
        return name

    def merged(self, infos: Sequence[ModuleInfo], method: str | None = None, pinned: set[str] | None = None) -> str:
        """Merge module versions into one adapter with peft's ``add_weighted_adapter``; cached by module set.

        ``method``: linear (weights 1/k, same ranks), ties / dare_ties / dare_linear (density 0.5, weights 1),
        cat (concatenation: the exact sum of the modules' updates), svd (the sum, truncated to the largest rank).
        """
        strict = method is not None  # an explicit method is honoured or refused, the default may fall back
        method = method or self._read().merge
        if method not in MERGE_METHODS:
            raise ValueError(f"merge: expected one of {MERGE_METHODS}, got {method!r}")
        if len(infos) == 1:
            return self.load(infos[0], pinned)
        if any(i.lora_spec.get("use_dora") for i in infos):
            raise ValueError("merging DoRA modules is not supported (their magnitude vectors do not add up); "
                             "route each question to one module instead (top_k=1)")
        ranks = {int(i.lora_spec.get("r", 0)) * (2 if i.lora_spec.get("init") == "pissa" else 1) for i in infos}
        if method in ("linear", "ties", "dare_ties", "dare_linear") and len(ranks) > 1:
            if strict:
                raise ValueError(f"merge {method!r} needs modules of one rank, got ranks {sorted(ranks)}; use 'cat' or 'svd'")
            warnings.warn(f"merge {method!r} needs modules of one rank (got {sorted(ranks)}): merging with 'cat'",
                          stacklevel=3)
            method = "cat"
        key = f"merge:{method}:" + "+".join(sorted(f"{i.module_id}@v{i.version}" for i in infos))
        name = self._loaded.get(key)
        if name is not None:
            self.stats["hits"] += 1
            self._touch(key, name, pinned or set())
            return name
        self.stats["misses"] += 1
        pinned = set(pinned or ())
        names = []
        for info in infos:
            names.append(self.load(info, pinned))
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
                self.peft.add_weighted_adapter(adapters=names, adapter_name=name, **kwargs)
        except BaseException:
            self.remove(name)  # a half-built adapter would be reused by peft next time
            raise
        # The weights (and their scalings) are folded into the merged A and B; peft gives the merged adapter
        # alpha = its rank, which is a scaling of 1 except with rsLoRA (sqrt(r)): make it 1 in every case.
        for module in self.peft.modules():
            scaling = getattr(module, "scaling", None)
            if isinstance(scaling, dict) and name in scaling:
                scaling[name] = 1.0
        self._touch(key, name, pinned)
        return name

    def names_for(self, selection: Sequence[Sequence[ModuleInfo]], merge: str | None = None) -> list[str]:
        """One adapter name per row (``__base__`` for none), loading or merging what is missing."""
        by_key: dict[tuple[str, ...], list[ModuleInfo]] = {}
        for infos in selection:
            by_key.setdefault(tuple(sorted(i.module_id for i in infos)), sorted(infos, key=lambda i: i.module_id))
        pinned: set[str] = set()  # a small cache budget must not evict one row's adapter while the next loads
        names: dict[tuple[str, ...], str] = {(): BASE}
        for key in sorted(by_key):
            if key:
                infos = by_key[key]
                names[key] = self.merged(infos, merge, pinned) if len(infos) > 1 else self.load(infos[0], pinned)
                pinned.add(names[key])
        return [names[tuple(sorted(i.module_id for i in infos))] for infos in selection]

    # --- activation -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """The bare base model inside this block (peft's ``disable_adapter``)."""
        if self.peft is None:
            yield
        else:
            with self.peft.disable_adapter():
                yield

    @contextlib.contextmanager
    def activate(self, names: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Make the model answer with ``names`` (one per row); yields extra kwargs for generate/forward.

        One adapter for every row: it is set active (no per-row overhead). Several: peft's mixed-adapter batch
        (``adapter_names=``), one pass for all rows; ``{"by_adapter": ...}`` when that is off or impossible.
        """
        distinct = set(names)
        if distinct == {BASE} or self.peft is None:
            with self.disabled():
                yield {}
        elif len(distinct) == 1:
            self.peft.set_adapter(names[0])
            yield {}
        elif self._read().mixed_batches and not any(
            getattr(self.peft.peft_config.get(n), "use_dora", False) for n in distinct
        ):  # (peft refuses adapter_names with DoRA adapters: those take one pass per adapter)
            yield {"adapter_names": list(names)}
        else:
            yield {"by_adapter": list(names)}

    def run(self, names: Sequence[str], fn: Callable[[list[int], dict[str, Any]], list[Any]]) -> list[Any]:
        """``fn(rows, kwargs)`` with the adapters active: once (one adapter or a mixed batch), or once per
        adapter when mixed batches are off. Returns one value per row, in order."""
        n = len(names)
        with self.activate(names) as kw:
            if "by_adapter" not in kw:
                return fn(list(range(n)), kw)
        out: list[Any] = [None] * n
        for name in sorted(set(names)):
            rows = [i for i in range(n) if names[i] == name]
            with self.activate([name] * len(rows)) as kw2:
                for i, value in zip(rows, fn(rows, kw2)):
                    out[i] = value
        return out

    # --- PiSSA weight surgery ---------------------------------------------------------------------------------

    def snapshot_linear(self) -> dict[str, Any]:
        """Copies of the base model's linear weights (PiSSA initialisation rewrites them)."""
        import torch

        return {
            _unwrapped(n): m.weight.detach().clone()
            for n, m in self.base.named_modules()
            if isinstance(m, torch.nn.Linear) and "lora_" not in n and "lm_head" not in n
        }

    def restore_linear(self, snapshot: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for n, m in self.base.named_modules():
                key = _unwrapped(n)
                if isinstance(m, torch.nn.Linear) and key in snapshot:
                    m.weight.copy_(snapshot[key])


def adapter_stem(module_id: str) -> str:
    """A peft adapter name for a module id (torch module names cannot contain '.')."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", module_id)
    if stem != module_id:
        stem += "_" + hashlib.sha1(module_id.encode()).hexdigest()[:6]
    return stem


def _unwrapped(name: str) -> str:
    """A linear layer's name with peft's wrapper suffix removed (``q_proj.base_layer`` -> ``q_proj``)."""
    return name[: -len(".base_layer")] if name.endswith(".base_layer") else name
