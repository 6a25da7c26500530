"""Reading through a vLLM server (``ReadConfig(engine="vllm")``) against a stand-in server on the tiny model.

The stand-in speaks the few endpoints loramem uses (models, load/unload adapter, completions with token-id
prompts and ``return_tokens_as_token_ids`` log-probs) and answers each adapter with a reply the test chose:
what is checked here is loramem's side (rows grouped by adapter, token-id prompts, the zero adapter, the
answers decoded and chosen as in-process, registration of new versions, errors). ``tests/test_serve.py``
checks against a real vLLM (``make test-serve``).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST_LORA, FAST_SYNTH, FAST_TRAIN

from loramem import Fact, KnowledgeMemory, ReadConfig
from loramem.engine import ZERO, EngineUnavailable, export_zero, served_name
from loramem.serve import Watcher, max_lora_rank, server_command, server_env, vllm_python


class FakeVLLM:
    def __init__(self) -> None:
        self.adapters: dict[str, str] = {}  # name -> path
        self.replies: dict[str, tuple[list[int], list[float]]] = {}
        self.completions: list[dict[str, Any]] = []
        self.loads: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                raw = (json.dumps(body) if not isinstance(body, str) else body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._send(200, {"data": [{"id": "base"}] + [{"id": n} for n in fake.adapters]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/load_lora_adapter":
                    if body["lora_name"] in fake.adapters:
                        return self._send(400, {"message": f"The lora adapter '{body['lora_name']}' has already been loaded."})
                    assert (Path(body["lora_path"]) / "adapter_config.json").exists()
                    fake.adapters[body["lora_name"]] = body["lora_path"]
                    fake.loads.append(body["lora_name"])
                    return self._send(200, "Success")
                if self.path == "/v1/unload_lora_adapter":
                    fake.adapters.pop(body["lora_name"])
                    return self._send(200, "Success")
                assert self.path == "/v1/completions"
                if body["model"] not in fake.adapters:
                    return self._send(404, {"message": f"The model `{body['model']}` does not exist."})
                fake.completions.append(body)
                ids, lps = fake.replies[body["model"]]
                choices = [{"index": k, "text": "?", "logprobs": {"tokens": [f"token_id:{t}" for t in ids],
                                                                   "token_logprobs": lps}}
                           for k in range(len(body["prompt"]))]
                self._send(200, {"choices": choices})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake() -> Iterator[FakeVLLM]:
    server = FakeVLLM()
    yield server
    server.server.shutdown()


@pytest.fixture
def two(tmp_path: Path, tiny_model_dir: Path) -> Iterator[KnowledgeMemory]:
    m = KnowledgeMemory.open(tmp_path / "store", model=str(tiny_model_dir), train=dataclasses.replace(FAST_TRAIN, max_steps=20),
                             lora=FAST_LORA, synth=FAST_SYNTH)
    m.write([Fact("Alma", "favourite colour", "blue")], namespace="a")
    m.write([Fact("Bram", "favourite colour", "red")], namespace="b")
    yield m
    m.close()


def reply(mem: KnowledgeMemory, text: str, logprob: float) -> tuple[list[int], list[float]]:
    ids = mem.tokenizer(text, add_special_tokens=False)["input_ids"] + mem.prompt_format.end_ids
    return ids, [logprob] * len(ids)


def test_rows_go_to_the_server_one_request_per_adapter_with_token_id_prompts(two: KnowledgeMemory,
                                                                             fake: FakeVLLM) -> None:
    a, b = (two.ls(ns)[0] for ns in ("a", "b"))
    fake.replies = {served_name(a): reply(two, "blue", -0.1), served_name(b): reply(two, "red", -0.2),
                    ZERO: reply(two, "no idea", -1.0)}
    two.read_config = ReadConfig(engine="vllm", engine_url=fake.url)
    qs = ["What is the favourite colour of Alma?", "What is the favourite colour of Bram?", "Who are you?",
          "What is Alma's favourite colour?"]
    out = two.ask(qs, modules=[a.module_id, b.module_id, None, a.module_id])
    assert [x.text for x in out] == ["blue", "red", "no idea", "blue"]
    assert [x.modules for x in out] == [[a.module_id], [b.module_id], [], [a.module_id]]
    by_model = {c["model"]: c for c in fake.completions}
    assert sorted(by_model) == sorted([served_name(a), served_name(b), ZERO]) and len(fake.completions) == 3
    # The prompts are the token ids the in-process reader would feed, two rows of a's in one request.
    assert by_model[served_name(a)]["prompt"] == [two.tokenizer(two.prompt_format.prompt(q), add_special_tokens=False)
                                                  ["input_ids"] for q in (qs[0], qs[3])]
    assert by_model[ZERO]["temperature"] == 0.0 and by_model[ZERO]["max_tokens"] == two.read_config.max_new_tokens
    # Every served version was exported under <store>/serve/ once and registered once.
    assert sorted(fake.loads) == sorted([ZERO, served_name(a), served_name(b)])
    assert all(Path(p).parent == two.store.root / "serve" for p in fake.adapters.values())
    two.ask(qs[:1], modules=[a.module_id])
    assert len(fake.loads) == 3
    fake.adapters.clear()  # the server restarted: a 404, then the read lists and registers again, once
    assert two.ask(qs[:1], modules=[a.module_id])[0].text == "blue"
    assert len(fake.loads) == 5
    # The zero adapter serves "no memory": every factor of the module it copies the shapes of, zeroed.
    from safetensors.torch import load_file

    zero = load_file(str(Path(fake.adapters[ZERO]) / "adapter_model.safetensors"))
    assert zero and all(float(t.abs().sum()) == 0.0 for t in zero.values())


@pytest.mark.filterwarnings("ignore:module .* below target_recall")
def test_selection_keeps_the_row_the_server_is_surer_of_and_a_new_version_is_registered(
        two: KnowledgeMemory, fake: FakeVLLM) -> None:
    a, b = (two.ls(ns)[0] for ns in ("a", "b"))
    fake.replies = {served_name(a): reply(two, "blue", -2.0), served_name(b): reply(two, "red", -0.05),
                    ZERO: reply(two, "?", -1.0)}
    two.read_config = ReadConfig(engine="vllm", engine_url=fake.url)
    out = two.ask("What is the favourite colour of Bram?", modules=[[a.module_id, b.module_id]])
    assert out.text == "red" and out.modules == [b.module_id]
    assert [row[0] for row in out.details["select"]] == [a.module_id, b.module_id]
    assert out.details["select"][1][1] == pytest.approx(-0.05)
    # A rewrite is a new version: a new immutable name, registered with the server at the next read.
    two.read_config = ReadConfig()
    two.update([Fact("Alma", "favourite colour", "green")], namespace="a")
    a2 = two.ls("a")[0]
    assert served_name(a2) != served_name(a)
    fake.replies[served_name(a2)] = reply(two, "green", -0.1)
    two.read_config = ReadConfig(engine="vllm", engine_url=fake.url)
    assert two.ask("What is the favourite colour of Alma?", namespace="a").text == "green"
    assert fake.loads[-1] == served_name(a2)


def test_merged_rows_generate_in_process(two: KnowledgeMemory, fake: FakeVLLM) -> None:
    a, b = (two.ls(ns)[0] for ns in ("a", "b"))
    q = "What is the favourite colour of Alma?"
    local = two.ask(q, modules=[[a.module_id, b.module_id]], merge="cat").text
    two.read_config = ReadConfig(engine="vllm", engine_url=fake.url)
    assert two.ask(q, modules=[[a.module_id, b.module_id]], merge="cat").text == local
    assert fake.completions == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_fails_or_falls_back_as_configured(two: KnowledgeMemory) -> None:
    a = two.ls("a")[0]
    q = "What is the favourite colour of Alma?"
    local = two.ask(q, modules=[a.module_id]).text
    url = f"http://127.0.0.1:{_closed_port()}"
    two.read_config = ReadConfig(engine="vllm", engine_url=url)
    with pytest.raises(EngineUnavailable, match=rf"{url}.*not reachable.*loramem serve.*engine_fallback='local'"):
        two.ask(q, modules=[a.module_id])
    two.read_config = ReadConfig(engine="vllm", engine_url=url, engine_fallback="local")
    with pytest.warns(RuntimeWarning, match="answering in-process"):
        assert two.ask(q, modules=[a.module_id]).text == local


def test_engine_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="engine_url: expected an http"):
        ReadConfig(engine="vllm")
    with pytest.raises(ValueError, match="engine: expected one of"):
        ReadConfig(engine="sglang")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="engine_fallback"):
        ReadConfig(engine="vllm", engine_url="http://x", engine_fallback="retry")  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:module .* below target_recall")
def test_the_watcher_loads_new_versions_and_unloads_superseded_ones_after_a_grace(two: KnowledgeMemory,
                                                                                   fake: FakeVLLM) -> None:
    from loramem.engine import Client

    said: list[str] = []
    watcher = Watcher(two.store, Client(fake.url), unload_after=60.0, say=said.append)
    loaded, _ = watcher.sync(now=0.0)
    old = served_name(two.ls("a")[0])
    assert sorted(loaded) == sorted(served_name(i) for i in two.ls()) and old in fake.adapters
    two.update([Fact("Alma", "favourite colour", "green")], namespace="a")
    new = served_name(two.ls("a")[0])
    loaded, unloaded = watcher.sync(now=10.0)
    assert loaded == [new] and unloaded == [] and old in fake.adapters  # reads routed before the commit finish
    assert watcher.sync(now=69.0) == ([], [])
    assert watcher.sync(now=70.0) == ([], [old]) and old not in fake.adapters
    assert any("unloaded" in line for line in said)


def test_server_command_environment_and_rank(two: KnowledgeMemory, tmp_path: Path) -> None:
    infos = two.ls()
    assert max_lora_rank(infos) == 16 and max_lora_rank(infos, minimum=1) == 8
    zero = export_zero(two.store, like=infos[0])
    cmd = server_command("py", "/base", {ZERO: zero}, name="tiny", host="127.0.0.1", port=8011, dtype="float32",
                         rank=16, max_loras=4, max_cpu_loras=32, max_model_len=512)
    assert cmd[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--enable-lora" in cmd and f"{ZERO}={zero}" in cmd and "--enforce-eager" in cmd
    assert cmd[cmd.index("--max-lora-rank") + 1] == "16"
    lib = tmp_path / "venv" / "lib"
    lib.mkdir(parents=True)
    (lib / "libiomp5.so").write_bytes(b"")
    (tmp_path / "venv" / "bin").mkdir()
    env = server_env(str(tmp_path / "venv" / "bin" / "python"), base={"PATH": "/bin"})
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["LD_PRELOAD"] == str((lib / "libiomp5.so").resolve())
    with pytest.raises(ValueError, match="no such file"):
        vllm_python("/nonexistent/python")


def test_loramem_serve_without_vllm_says_how_to_get_it(two: KnowledgeMemory, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from loramem.cli import main

    monkeypatch.delenv("LORAMEM_VLLM_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./.venv-serve here
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    model = two.ls()[0].base_model
    assert main(["serve", "--store", str(two.store.root), "--model", model]) == 2
    assert "make serve-venv" in capsys.readouterr().err
