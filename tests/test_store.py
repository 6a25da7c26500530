"""Bad input and bad states: the store reports them clearly and never loses what was committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import COLOURS, FAST_LORA, FAST_TRAIN

from loramem import (
    BaseModelMismatchError,
    CorruptModuleError,
    KnowledgeMemory,
    StoreBusyError,
    StoreSchemaError,
)
from loramem.store import ModuleStore

HERE = Path(__file__).parent


def _questions(facts):
    return [f.canonical_question for f in facts]


def test_corrupt_adapter_is_named_and_other_modules_still_work(mem, facts):
    mem.write(facts[:3], namespace="a")
    mem.write(facts[3:], namespace="b")
    bad = mem.ls("a")[0]
    weights = bad.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncate
    fresh = KnowledgeMemory.open(mem.store.root, model=mem.model_config.name)
    with pytest.raises(CorruptModuleError, match=f"{bad.module_id}.*adapter_model.safetensors.*corrupt or truncated"):
        fresh.ask(facts[0].canonical_question, namespace="a")
    assert [a.text for a in fresh.ask(_questions(facts[3:]), namespace="b")] == COLOURS[3:]


def test_missing_adapter_file_is_named(mem, facts):
    mem.write(facts[:2], namespace="a")
    info = mem.ls("a")[0]
    (info.path / "adapter_config.json").unlink()
    fresh = KnowledgeMemory.open(mem.store.root, model=mem.model_config.name)
    with pytest.raises(CorruptModuleError, match="missing file .*adapter_config.json"):
        fresh.ask("x?", namespace="a")


def test_only_safetensors_are_written(mem, facts):
    mem.write(facts[:2], namespace="a")
    files = sorted(p.name for p in mem.ls("a")[0].path.iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]


def test_other_base_model_is_refused(mem, facts, other_model_dir):
    mem.write(facts[:2], namespace="a")
    other = KnowledgeMemory.open(mem.store.root, model=str(other_model_dir))
    with pytest.raises(BaseModelMismatchError, match=r"trained on base model .* \(fingerprint \w+\), but the loaded model is .* \(fingerprint \w+\)"):
        other.ask(facts[0].canonical_question, namespace="a")
    with pytest.raises(BaseModelMismatchError):
        other.write(facts[2:3], namespace="a")
    assert mem.ls("a")[0].version == 1


def test_newer_schema_is_refused(tmp_path):
    ModuleStore(tmp_path / "s").close()
    db = sqlite3.connect(tmp_path / "s" / "manifest.sqlite")
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreSchemaError, match="newer loramem \\(schema v99\\).*reads up to v1"):
        ModuleStore(tmp_path / "s")


def test_store_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="is not a folder"):
        ModuleStore(tmp_path / "f")


def test_second_writer_waits_then_fails_clearly(tmp_path):
    store = ModuleStore(tmp_path / "s", lock_timeout=0.2)
    other = ModuleStore(tmp_path / "s", lock_timeout=0.2)
    with store.write_lock(), pytest.raises(StoreBusyError, match="being written by another process; waited"), other.write_lock():
        pass
    with other.write_lock():  # released: the next writer gets in
        pass


def test_concurrent_writer_process_waits_for_the_lock(tmp_path, tiny_model_dir, facts):
    """A second process writing the same store waits for the first and both writes land whole."""
    script = textwrap.dedent(
        f"""
        import sys, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(HERE)!r})
        from conftest import FAST_TRAIN, FAST_LORA
        from loramem import KnowledgeMemory, Fact
        m = KnowledgeMemory.open({str(tmp_path / "s")!r}, model={str(tiny_model_dir)!r}, train=FAST_TRAIN, lora=FAST_LORA)
        m.write([Fact(sys.argv[1], "favourite colour", sys.argv[2])], namespace="shared")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, name, colour])
        for name, colour in (("Alma", "blue"), ("Bram", "red"))
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    m = KnowledgeMemory.open(tmp_path / "s", model=str(tiny_model_dir))
    info = m.ls("shared")[0]
    assert info.version == 2 and info.items == 2


KILL_SCRIPT = """
import os, sys, threading, torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
from conftest import FAST_LORA
from loramem import KnowledgeMemory, Fact, TrainConfig
train = TrainConfig(lr=5e-3, max_steps=3, progress=False, seq_len=128, batch_tokens=256)
m = KnowledgeMemory.open({store!r}, model={model!r}, train=train, lora=FAST_LORA)
tmp = os.path.join({store!r}, "tmp")
real_rename = os.rename
def pause_before_the_commit(src, dst, *args, **kwargs):
    # The new version is built and fsynced in tmp/; next it would be moved into place and committed.
    if os.path.dirname(os.fspath(src)) == tmp:
        print("COMMITTING", src, flush=True)
        threading.Event().wait()  # until the test kills this process
    return real_rename(src, dst, *args, **kwargs)
os.rename = pause_before_the_commit
m.write([Fact("Cora", "favourite colour", "green"), Fact("Zev", "favourite colour", "pink")], namespace="people")
print("NOT PAUSED", flush=True)
"""


def test_killed_writer_leaves_the_store_as_it_was(mem, facts, tiny_model_dir):
    mem.write(facts[:2], namespace="people")
    before = mem.ls("people")[0]
    answers_before = [a.text for a in mem.ask(_questions(facts[:2]), namespace="people")]
    script = KILL_SCRIPT.format(here=str(HERE), store=str(mem.store.root), model=str(tiny_model_dir))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        marker, _, building = proc.stdout.readline().strip().partition(" ")
        # The kill lands inside the write: it holds the lock, trained, and built the new version aside.
        assert marker == "COMMITTING", marker
        built = Path(building)
        assert sorted(p.name for p in built.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # What it leaves: only its temporary folder; no new version folder, no manifest row.
    assert list((mem.store.root / "tmp").iterdir()) == [built]
    assert sorted(p.name for p in (mem.store.root / "modules").rglob("v*")) == [before.path.name]
    fresh = KnowledgeMemory.open(mem.store.root, model=str(tiny_model_dir), train=FAST_TRAIN, lora=FAST_LORA)
    after = fresh.ls("people")[0]
    assert (after.module_id, after.version, after.items, after.sha256) == (
        before.module_id, before.version, before.items, before.sha256,
    )
    assert [a.text for a in fresh.ask(_questions(facts[:2]), namespace="people")] == answers_before
    assert {i.id for i in fresh.items("people")} == {f.id for f in facts[:2]}
    # gc removes the leftover (and nothing that is committed); the dead writer's lock went with it.
    fresh.gc()
    assert not built.exists() and not list((mem.store.root / "tmp").iterdir())
    assert fresh.ls("people")[0].sha256 == before.sha256
    report = fresh.write(facts[2:3], namespace="people")
    assert report.version == 2 and not list((mem.store.root / "tmp").iterdir())


def test_killed_during_commit_leaves_an_orphan_folder_that_is_ignored(mem, facts, monkeypatch):
    """A crash after the folder is renamed into place but before the manifest commits."""
    mem.write(facts[:2], namespace="people")
    before = mem.ls("people")[0]

    real_rename = os.rename

    def rename_then_crash(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_rename(src, dst, *args, **kwargs)
        if Path(src).parent == mem.store.root / "tmp":  # the new version is in place, its row not yet written
            raise KeyboardInterrupt("simulated crash before the manifest transaction")

    monkeypatch.setattr(os, "rename", rename_then_crash)
    with pytest.raises(KeyboardInterrupt):
        mem.write(facts[2:4], namespace="people")
    monkeypatch.undo()
    assert (before.path.parent / "v2").exists()  # the orphan
    assert mem.ls("people")[0].version == 1
    assert mem.gc() == 1 and not (before.path.parent / "v2").exists()
    assert mem.write(facts[2:4], namespace="people").version == 2


def test_many_processes_opening_a_new_store_at_once(tmp_path):
    """Opening a fresh store from several processes at once must not fail with 'database is locked'."""
    # Each process imports, says so, and waits on its stdin; one newline to all of them is the starting gun.
    code = (
        "import sys; from loramem.store import ModuleStore; print('ready', flush=True); sys.stdin.readline(); "
        f"ModuleStore({str(tmp_path / 's')!r}).modules()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
