"""Reading through a vLLM server: loramem routes and builds the prompts, vLLM generates.

With ``ReadConfig(engine="vllm", engine_url=...)`` the rows of a read batch (``compose.run``) go to an
OpenAI-compatible vLLM server (``loramem serve``) instead of the in-process model:

- each module version is served under an immutable name, ``served_name(info)`` (``<id>__v<N>-<sha8>``: a new
  version is a new name, so a read never gets a half-swapped adapter); a row without a module goes through
  ``ZERO``, an adapter whose factors are all zero (vLLM on CPU gives a no-adapter row batched with adapter
  rows the last adapter slot's delta: SERVING.md);
- a version the server does not know yet is exported (``export.export_peft``) under ``<store>/serve/`` and
  registered with ``POST /v1/load_lora_adapter``; this needs the server to see the store's folder;
- prompts go as token ids, so vLLM reads exactly the tokens the in-process reader would; the reply's token
  ids are decoded and cut by the same code as in-process answers (``read.cut``), so both give one text;
- rows are grouped by adapter, one request per adapter, all requests in flight at once: vLLM batches them
  into one mixed-adapter batch;
- rows of a merged module set (``compose="merge"``) have no served adapter and generate in-process.

A server that cannot be reached raises ``EngineUnavailable`` naming the URL, or, with
``engine_fallback="local"``, warns and answers in-process. Layer 4: over the store, export and read.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .adapters import adapter_stem
from .config import ReadConfig
from .prompts import PromptFormat
from .read import Generated, answer_length, cut, stop_token_ids
from .store import ModuleInfo, ModuleStore

ZERO = "loramem-zero"  # the adapter "no memory" rows are served through
SERVE_DIR = "serve"  # under the store root: exported adapters the server loads (``gc`` never touches it)


class EngineUnavailable(ConnectionError):
    """The vLLM server did not answer (refused, timed out, or not a vLLM server)."""


class EngineError(RuntimeError):
    """The vLLM server answered with an error (a bad request, an adapter it could not load)."""


class UnknownModel(EngineError):
    """HTTP 404: the server does not hold that adapter (it restarted, or another client unloaded it)."""


def served_name(info: ModuleInfo) -> str:
    """The immutable name a module version is served under: id, version and the first 8 hex of its sha256
    (a module id re-created after a drop restarts at v1; its weights, and so its name, differ)."""
    return f"{adapter_stem(info.module_id)}__v{info.version}-{info.sha256[:8]}"


def serve_dir(store: ModuleStore) -> Path:
    return store.root / SERVE_DIR


class Client:
    """A small client of vLLM's OpenAI-compatible server (stdlib HTTP only)."""

    def __init__(self, url: str, timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._known: set[str] | None = None  # adapters the server has, as last listed or loaded by us
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:  # the server answered: a request it refused
            detail = exc.read().decode(errors="replace")[:500]
            raise (UnknownModel if exc.code == 404 else EngineError)(f"vLLM server {self.url}: {method} {path} -> HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, unreachable, timed out
            reason = getattr(exc, "reason", exc)
            raise EngineUnavailable(f"vLLM server {self.url} is not reachable ({reason})") from exc
        text = raw.decode(errors="replace")
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return text  # vLLM answers adapter (un)loading in plain text

    def models(self) -> set[str]:
        """Every model name the server serves: the base and each registered adapter."""
        out = self._call("GET", "/v1/models", timeout=min(self.timeout, 10.0))
        if not isinstance(out, dict) or not isinstance(out.get("data"), list):
            raise EngineUnavailable(f"{self.url} answered /v1/models without a model list: not a vLLM server?")
        names = {str(m.get("id")) for m in out["data"]}
        with self._lock:
            self._known = set(names)
        return names

    def load(self, name: str, path: str | Path) -> None:
        try:
            self._call("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
        except EngineError as exc:
            if "already" not in str(exc).lower():  # loaded meanwhile by another client or the watcher
                raise
        with self._lock:
            if self._known is not None:
                self._known.add(name)

    def unload(self, name: str) -> None:
        self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        with self._lock:
            if self._known is not None:
                self._known.discard(name)

    def known(self) -> set[str]:
        with self._lock:
            known = self._known
        return set(known) if known is not None else self.models()

    def complete(self, name: str, prompts: Sequence[Sequence[int]], *, max_tokens: int,
                 stop_ids: Sequence[int]) -> list[tuple[list[int], list[float]]]:
        """Greedy continuations of token-id prompts with adapter ``name``: per prompt (token ids, their
        log-probabilities), in the prompts' order."""
        body = {"model": name, "prompt": [list(p) for p in prompts], "max_tokens": max_tokens, "temperature": 0.0,
                "logprobs": 1, "return_tokens_as_token_ids": True, "stop_token_ids": list(stop_ids),
                "skip_special_tokens": False}
        out = self._call("POST", "/v1/completions", body)
        choices = sorted(out.get("choices", []) if isinstance(out, dict) else [], key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise EngineError(f"vLLM server {self.url}: {len(prompts)} prompts sent, {len(choices)} answers back")
        return [_ids_and_logprobs(c) for c in choices]


def _ids_and_logprobs(choice: dict[str, Any]) -> tuple[list[int], list[float]]:
    """A choice's generated token ids and their log-probabilities (``return_tokens_as_token_ids`` spells each
    token ``token_id:N``)."""
    lp = choice.get("logprobs") or {}
    tokens, values = lp.get("tokens") or [], lp.get("token_logprobs") or []
    ids = []
    for t in tokens:
        if not (isinstance(t, str) and t.startswith("token_id:")):
            raise EngineError(f"vLLM answered a token as {t!r}, not 'token_id:N': a server older than vLLM 0.6?")
        ids.append(int(t.split(":", 1)[1]))
    return ids, [float(v) for v in values]


_clients: dict[tuple[str, float], Client] = {}
_clients_lock = threading.Lock()


def client(url: str, timeout: float = 300.0) -> Client:
    """One client per server URL (it remembers which adapters the server holds)."""
    with _clients_lock:
        return _clients.setdefault((url.rstrip("/"), timeout), Client(url, timeout))


def export_served(store: ModuleStore, info: ModuleInfo) -> Path:
    """The version's vLLM-ready PEFT folder under ``<store>/serve/``, exported on first use (``export_peft``
    folds rsLoRA and writes ``init_lora_weights: true``); refused with the engine's reasons if vLLM cannot
    serve it."""
    from .export import check_for, export_peft

    out = serve_dir(store) / served_name(info)
    if not (out / "adapter_config.json").exists():
        cfg, state = store.load_adapter(info)
        check_for("vllm", cfg, state, max_lora_rank=512)
        try:
            export_peft(cfg, state, out)
        except ValueError:  # exported meanwhile by another process: the same immutable folder
            if not (out / "adapter_config.json").exists():
                raise
    return out


def export_zero(store: ModuleStore, like: ModuleInfo | None = None, config: dict[str, Any] | None = None) -> Path:
    """The zero adapter "no memory" rows are served through: a module's shapes with every factor zero, or,
    with no module yet, rank 1 on q_proj/v_proj of every layer of the base ``config`` (config.json)."""
    import torch

    from .export import export_peft

    out = serve_dir(store) / ZERO
    if (out / "adapter_config.json").exists():
        return out
    if like is not None:
        cfg, state = store.load_adapter(like)
        zero = {k: torch.zeros_like(v) for k, v in state.items()}
        cfg = {k: v for k, v in cfg.items() if k not in ("rank_pattern", "alpha_pattern")}
    else:
        if config is None:
            raise ValueError("a zero adapter needs a module to copy the shapes of, or the base model's config.json")
        layers, hidden = int(config["num_hidden_layers"]), int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or hidden // heads)
        kv = int(config.get("num_key_value_heads") or heads) * head_dim
        zero = {}
        for i in range(layers):
            for proj, width in (("q_proj", heads * head_dim), ("v_proj", kv)):
                key = f"base_model.model.model.layers.{i}.self_attn.{proj}"
                zero[f"{key}.lora_A.weight"] = torch.zeros(1, hidden)
                zero[f"{key}.lora_B.weight"] = torch.zeros(width, 1)
        cfg = {"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": ["q_proj", "v_proj"],
               "bias": "none", "task_type": "CAUSAL_LM", "base_model_name_or_path": config.get("_name_or_path")}
    try:
        export_peft(cfg, zero, out)
    except ValueError:  # written meanwhile by another process
        if not (out / "adapter_config.json").exists():
            raise
    return out


def ensure(cl: Client, store: ModuleStore, infos: Sequence[ModuleInfo]) -> None:
    """Register with the server every version in ``infos`` it does not hold yet, and the zero adapter."""
    known = cl.known()
    missing = {served_name(i): i for i in infos if served_name(i) not in known}
    if ZERO not in known:
        cl.load(ZERO, export_zero(store, like=infos[0] if infos else _any_module(store)))
    for name, info in missing.items():
        cl.load(name, export_served(store, info))


def _any_module(store: ModuleStore) -> ModuleInfo | None:
    mods = store.modules()
    return mods[0] if mods else None


def generate(
    store: ModuleStore, prompt: PromptFormat, texts: Sequence[str], row_infos: Sequence[Sequence[ModuleInfo]],
    cfg: ReadConfig, stop: Sequence[str] | None = None,
) -> list[Generated | None]:
    """Each row's greedy answer from the server (None for a merged row, which the caller generates).

    ``row_infos``: the module versions of each row (none: the bare model, through ``ZERO``).
    """
    if not cfg.engine_url:
        raise ValueError("ReadConfig(engine='vllm') needs engine_url, e.g. 'http://127.0.0.1:8000'")
    cl = client(cfg.engine_url, cfg.engine_timeout)
    ensure(cl, store, [infos[0] for infos in row_infos if len(infos) == 1])
    tok = prompt.tokenizer
    stop_ids = stop_token_ids(prompt)
    groups: dict[str, list[int]] = {}
    for i, infos in enumerate(row_infos):
        if len(infos) <= 1:
            groups.setdefault(served_name(infos[0]) if infos else ZERO, []).append(i)
    encoded = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    out: list[Generated | None] = [None] * len(texts)

    def one(name: str) -> tuple[str, list[tuple[list[int], list[float]]]]:
        rows = [encoded[i] for i in groups[name]]
        try:
            return name, cl.complete(name, rows, max_tokens=cfg.max_new_tokens, stop_ids=stop_ids)
        except UnknownModel:  # the server lost it (a restart): list again, register again, once
            cl.models()
            ensure(cl, store, [infos[0] for infos in row_infos if len(infos) == 1])
            return name, cl.complete(name, rows, max_tokens=cfg.max_new_tokens, stop_ids=stop_ids)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, min(len(groups), 64))) as pool:
        results = list(pool.map(one, list(groups)))
    per_row = (time.perf_counter() - t0) / max(1, sum(len(g) for g in groups.values()))
    for name, res in results:
        for i, (ids, lps) in zip(groups[name], res):
            n = answer_length(ids, stop_ids)
            ids = ids[:n]
            text = cut(tok.decode(ids, skip_special_tokens=False), prompt, tok, stop)
            n_out = len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0
            lp = float(sum(lps[:n]) / max(1, len(lps[:n]))) if lps else None
            out[i] = Generated(text, per_row, len(encoded[i]), n_out, lp, ids)
    return out


def unavailable(cfg: ReadConfig, exc: EngineUnavailable) -> None:
    """Raise, or warn that this read answers in-process, as ``cfg.engine_fallback`` says."""
    if cfg.engine_fallback == "error":
        raise EngineUnavailable(f"{exc}: start it with `loramem serve --store DIR`, or set "
                                "ReadConfig(engine_fallback='local') to answer in-process when it is down") from exc
    warnings.warn(f"{exc}: answering in-process (ReadConfig.engine_fallback='local')", RuntimeWarning, stacklevel=3)
