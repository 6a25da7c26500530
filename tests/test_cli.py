from __future__ import annotations

import json

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


def test_cli_round_trip(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from conftest import FAST_LORA, FAST_TRAIN

    import loramem.cli as cli

    # The CLI uses library defaults; give it the fast tiny-model settings.
    real_open = cli._open

    def fast_open(args):
        from loramem import KnowledgeMemory

        return KnowledgeMemory.open(args.store, model=args.model, train=FAST_TRAIN, lora=FAST_LORA)

    monkeypatch.setattr(cli, "_open", fast_open)
    data = tmp_path / "f.jsonl"
    data.write_text("\n".join(json.dumps({"subject": n, "relation": "favourite colour", "object": c})
                              for n, c in (("Alma", "blue"), ("Bram", "red"))))
    store = str(tmp_path / "mem")
    common = ["--store", store, "--model", str(tiny_model_dir), "-n", "people"]
    assert main(["write", *common, str(data)]) == 0
    assert "2 new item(s)" in capsys.readouterr().out
    assert main(["ask", *common, "What is the favourite colour of Bram?"]) == 0
    assert capsys.readouterr().out.strip() == "red"
    assert main(["ask", *common, "--json", "What is the favourite colour of Alma?"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "blue"
    assert main(["ls", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "people" in out and "100.0%" in out
    assert main(["forget", *common]) == 0
    assert "dropped 1 module" in capsys.readouterr().out
    assert main(["ask", *common, "x?"]) == 2
    assert "namespace 'people' holds nothing" in capsys.readouterr().err
    del real_open


def test_cli_reports_bad_file_without_traceback(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"\xff\xfe")
    assert main(["write", "--store", str(tmp_path / "m"), str(p)]) == 2
    assert "bad.jsonl:1: not UTF-8" in capsys.readouterr().err


def test_help_has_quick_start(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "quick start" in capsys.readouterr().out
