"""Modules written on the embedded model, served by a real vLLM (``make test-serve``), answer as in-process.

Three modules (one per namespace, two PhoneBook entries each) and rows without a module go in one read:
vLLM's answers must equal the in-process greedy answers token for token, bare rows included (they go
through the zero adapter: vLLM on CPU gives a no-adapter row batched with adapter rows the last adapter's
delta). Then a rewrite is served under its new name at the next read, and the watcher retires the old one.
Skips where no vLLM venv is found (``LORAMEM_VLLM_PYTHON`` or ./.venv-serve).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loramem import KnowledgeMemory, LoraSpec, ReadConfig, SynthConfig, TrainConfig
from loramem.phonebook import phonebook

pytestmark = pytest.mark.serve

NAMESPACES = ("n0", "n1", "n2")


def _python() -> str:
    for candidate in (os.environ.get("LORAMEM_VLLM_PYTHON"), ".venv-serve/bin/python"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("no vLLM venv: run `make test-serve` (it builds .venv-serve), or set LORAMEM_VLLM_PYTHON")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from loramem import serve

    python = _python()
    root = tmp_path_factory.mktemp("serve")
    mem = KnowledgeMemory.open(root / "store", train=TrainConfig(max_steps=40, min_epochs=1, progress=False),
                               lora=LoraSpec(r=8), synth=SynthConfig(context_mix=False),
                               read=ReadConfig(max_new_tokens=24, progress=False))
    book = phonebook(6, seed=3)
    for k, ns in enumerate(NAMESPACES):
        mem.write(book[2 * k: 2 * k + 2], namespace=ns)
    log = open(root / "vllm.log", "w")  # noqa: SIM115  # closed at teardown
    t0 = time.monotonic()
    proc, watcher = serve.start(root / "store", port=_free_port(), python=python, max_model_len=512, log=log,
                                say=lambda line: None)
    try:
        try:
            ready = serve.wait_ready(watcher.client, proc, 900.0)
        except serve.ServeError:
            log.flush()
            pytest.fail("vLLM did not start:\n" + (root / "vllm.log").read_text()[-3000:])
        print(f"\nvLLM ready after {ready:.0f} s ({time.monotonic() - t0:.0f} s with the exports)")
        yield {"mem": mem, "book": book, "watcher": watcher, "url": watcher.client.url}
    finally:
        serve.stop(proc)
        log.close()
        mem.close()


def _question(fact: Any) -> str:
    return f"What is the {fact.relation} of {fact.subject}?"


def _local_and_served(mem: KnowledgeMemory, url: str, questions: list[str], modules: list[Any]) -> tuple[Any, Any]:
    mem.read_config = ReadConfig(max_new_tokens=24, progress=False)
    local = mem.ask(questions, modules=modules)
    mem.read_config = ReadConfig(max_new_tokens=24, progress=False, engine="vllm", engine_url=url)
    try:
        return local, mem.ask(questions, modules=modules)
    finally:
        mem.read_config = ReadConfig(max_new_tokens=24, progress=False)


def test_three_modules_and_bare_rows_in_one_batch_answer_token_for_token_as_in_process(served: dict[str, Any]) -> None:
    from loramem import engine
    from loramem.read import generate_texts

    mem, book, url = served["mem"], served["book"], served["url"]
    infos = [mem.ls(ns)[0] for ns in NAMESPACES]
    questions = [_question(f) for f in book] + [_question(book[0]), "Who wrote the poem about the sea?"]
    row_infos = [[infos[k // 2]] for k in range(6)] + [[], []]
    rt = mem.rt
    texts = [rt.prompt.prompt(q) for q in questions]
    cfg = ReadConfig(max_new_tokens=24, progress=False)
    names = rt.pool.names_for(row_infos)
    local = rt.pool.run(names, lambda idx, kw: generate_texts(rt.pool.model, rt.prompt, [texts[i] for i in idx], cfg,
                                                              scores=True, **kw))
    remote = engine.generate(rt.store, rt.prompt, texts, row_infos,
                             ReadConfig(max_new_tokens=24, progress=False, engine="vllm", engine_url=url))
    for q, lo, re in zip(questions, local, remote):
        assert re is not None
        assert re.token_ids == lo.token_ids, (q, lo.text, re.text)
        assert re.text == lo.text
        assert re.logprob == pytest.approx(lo.logprob, abs=2e-3)
    # The adapters matter: the bare row of book[0]'s question answers differently from its module's row.
    assert local[6].text != local[0].text
    # The same through the front door.
    lo_answers, re_answers = _local_and_served(mem, url, questions, [[i.module_id for i in r] or None for r in row_infos])
    assert [a.text for a in re_answers] == [a.text for a in lo_answers]
    print(f"\nserved answers: {[a.text for a in re_answers[:6]]}; expected {[f.object for f in book]}")


def test_selection_through_vllm_keeps_the_module_in_process_selection_keeps(served: dict[str, Any]) -> None:
    mem, book, url = served["mem"], served["book"], served["url"]
    ids = [mem.ls(ns)[0].module_id for ns in NAMESPACES]
    questions = [_question(book[1]), _question(book[4])]
    local, remote = _local_and_served(mem, url, questions, [ids, ids])
    assert [a.text for a in remote] == [a.text for a in local]
    assert [a.modules for a in remote] == [a.modules for a in local]
    for lo, re in zip(local, remote):
        assert [row[0] for row in re.details["select"]] == [row[0] for row in lo.details["select"]]


def test_a_rewrite_is_served_under_its_new_name_and_the_old_one_is_retired(served: dict[str, Any]) -> None:
    import dataclasses

    from loramem.engine import served_name

    mem, book, url, watcher = served["mem"], served["book"], served["url"], served["watcher"]
    old = mem.ls("n0")[0]
    mem.update([dataclasses.replace(book[0], object="555-010-2468")], namespace="n0")
    new = mem.ls("n0")[0]
    local, remote = _local_and_served(mem, url, [_question(book[0])], [new.module_id])
    assert remote[0].text == local[0].text
    print(f"\nafter the rewrite: {remote[0].text!r} (new value 555-010-2468)")
    assert served_name(new) in watcher.client.models()
    watcher.unload_after = 0.0
    _, unloaded = watcher.sync(now=time.time())
    assert served_name(old) in unloaded and served_name(old) not in watcher.client.models()
