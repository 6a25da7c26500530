from __future__ import annotations

import json
import os

import pytest

from loramem.cli import InputError, main, read_items


def test_read_items_jsonl_and_txt(tmp_path):
    f = tmp_path / "facts.jsonl"
    f.write_text('{"subject": "Alma", "relation": "favourite colour", "object": "blue"}\n\n{"text": "Doc", "title": "T"}\n')
    items = read_items(f)
    assert [type(i).__name__ for i in items] == ["Fact", "Document"]
    t = tmp_path / "note.txt"
    t.write_text("Some note.")
    assert read_items(t)[0].title == "note"


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("bad.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"bad.jsonl:2: not UTF-8"),
        ("list.jsonl", b'{"text": "ok"}\n[1, 2]\n', r"list.jsonl:2: expected a JSON object, got list"),
        ("broken.jsonl", b'{"text": \n', r"broken.jsonl:1: not valid JSON"),
        ("keys.jsonl", b'{"subject": "a"}\n', r"keys.jsonl:1: expected keys subject/relation/object"),
        ("empty.jsonl", b"\n\n", r"empty.jsonl: no items"),
        ("empty.txt", b"  \n", r"empty.txt: the file is empty"),
        ("x.csv", b"a,b", r"expected a .jsonl or .txt file"),
    ],
)
def test_bad_input_files_name_file_and_line(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_items(p)


def _facts_file(path, pairs):  # type: ignore[no-untyped-def]
    path.write_text("\n".join(json.dumps({"subject": n, "relation": "favourite colour", "object": c}) for n, c in pairs))
    return str(path)


def _ls_rows(capsys) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """`loramem ls` rows by namespace: module, ver, rank, items, k-tokens, capacity, fill, recall, last write."""
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["namespace", "module", "ver", "rank"]
    return {row.split()[0]: row.split()[1:] for row in lines[1:]}


def test_cli_round_trip(tmp_path, tiny_model_dir, capsys):
    """The real command on the tiny model: --rank and --max-steps reach the written module."""
    from loramem.store import ModuleStore

    store = str(tmp_path / "mem")
    model = ["--store", store, "--model", str(tiny_model_dir)]
    # A step cap far below what recall needs: training stops exactly there, and the exit code says so.
    capped = _facts_file(tmp_path / "capped.jsonl", [("Cora", "green"), ("Dorin", "yellow")])
    assert main(["write", *model, "-n", "capped", "--rank", "4", "--max-steps", "3", capped]) == 3
    assert "after 3 steps" in capsys.readouterr().out
    people = _facts_file(tmp_path / "f.jsonl", [("Alma", "blue"), ("Bram", "red")])
    common = [*model, "-n", "people"]
    assert main(["write", *common, "--rank", "2", "--max-steps", "200", people]) == 0
    assert "2 new item(s)" in capsys.readouterr().out
    infos = {i.namespace: i for i in ModuleStore(store).modules()}
    assert infos["capped"].lora_spec["r"] == 4 and infos["capped"].report["steps"] == 3
    assert not infos["capped"].report["reached_target"] and infos["capped"].recall < 1.0
    assert infos["people"].lora_spec["r"] == 2 and 0 < infos["people"].report["steps"] <= 200
    assert infos["people"].report["reached_target"]
    assert main(["ls", "--store", store]) == 0
    rows = _ls_rows(capsys)
    assert rows["capped"][2] == "4" and rows["people"][2] == "2" and rows["people"][-2] == "100.0%"
    took = float(rows["people"][-1].rstrip("s"))  # the last write's seconds, synthesis to commit
    assert took > 0 and abs(took - infos["people"].write_seconds) < 0.06
    assert main(["ask", *common, "What is the favourite colour of Bram?"]) == 0
    assert capsys.readouterr().out.strip() == "red"
    assert main(["ask", *common, "--json", "What is the favourite colour of Alma?"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "blue"
    assert main(["forget", *common]) == 0
    assert "dropped 1 module" in capsys.readouterr().out
    assert main(["ask", *common, "x?"]) == 2
    assert "namespace 'people' holds nothing" in capsys.readouterr().err


def test_cli_reports_bad_file_without_traceback(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"\xff\xfe")
    assert main(["write", "--store", str(tmp_path / "m"), str(p)]) == 2
    assert "bad.jsonl:1: not UTF-8" in capsys.readouterr().err


def test_help_has_quick_start(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "quick start" in capsys.readouterr().out


def test_cli_remember_then_consolidate(tmp_path, tiny_model_dir, capsys):
    """remember trains nothing and loads no model; ls shows the buffer; consolidate empties it into a module."""
    from loramem.pending import set_state
    from loramem.store import ModuleStore

    store = str(tmp_path / "mem")
    facts = _facts_file(tmp_path / "f.jsonl", [("Alma", "blue")])
    assert main(["remember", "--store", store, "-n", "notes", "Bram lives in Oslo.", "--file", facts]) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == 2 and ids[0].startswith("doc-") and ids[1].startswith("fact-")
    assert main(["ls", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "pending  notes" in out and "2 item(s)" in out and "no modules" in out
    set_state(ModuleStore(store), "idle", {"namespace": None})  # a consolidator's heartbeat, from this process
    assert main(["ls", "--store", store]) == 0
    assert f"consolidator: idle (pid {os.getpid()}" in capsys.readouterr().out
    assert main(["consolidate", "--store", store, "--model", str(tiny_model_dir), "--max-steps", "300"]) in (0, 3)
    assert "2 new item(s)" in capsys.readouterr().out
    s = ModuleStore(store)
    assert s.query("SELECT COUNT(*) FROM pending")[0][0] == 0 and s.modules("notes")[0].items == 2
    assert main(["consolidate", "--store", store, "--model", str(tiny_model_dir)]) == 0
    assert "nothing pending" in capsys.readouterr().out
