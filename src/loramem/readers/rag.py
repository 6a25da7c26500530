"""Retrieval-augmented generation: chunks of the knowledge in a faiss index, the top-k put in the prompt.

The index persists as a folder (by default ``<store>/rag/<name>/``, beside the module store), so it is built
once and reopened like the memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..embed import Embedder
from ..index import VectorIndex
from ..text import chunk_text, render_context, render_item
from ..types import Item
from .base import Context


class RAGIndex:
    """Chunks of items (or texts) with their embeddings. ``RAGIndex.build(items, path=...)``; ``RAGIndex.open(path)``."""

    def __init__(self, index: VectorIndex, path: Path | None = None, chunk_size: int = 128, overlap: int = 16) -> None:
        self.index = index
        self.path = path
        self.chunk_size = chunk_size
        self.overlap = overlap

    @classmethod
    def build(
        cls,
        items: Sequence[Item | str],
        *,
        path: str | os.PathLike[str] | None = None,
        chunk_size: int = 128,
        overlap: int | None = None,
        embedder: Embedder | None = None,
    ) -> RAGIndex:
        """Chunk and embed ``items``; ``overlap`` defaults to an eighth of ``chunk_size`` (in words)."""
        overlap = chunk_size // 8 if overlap is None else overlap
        texts: list[str] = []
        records: list[dict[str, Any]] = []
        for item in items:
            source = item if isinstance(item, str) else item.id
            for j, chunk in enumerate(chunk_text(render_item(item), chunk_size, overlap)):
                texts.append(chunk)
                records.append({"text": chunk, "source": source[:200], "chunk": j})
        if not texts:
            raise ValueError("items: expected at least one item to index, got none")
        index = VectorIndex(embedder)
        index.add(texts, records)
        out = cls(index, Path(path) if path is not None else None, chunk_size, overlap)
        if out.path is not None:
            index.save(out.path)
        return out

    @classmethod
    def open(cls, path: str | os.PathLike[str], embedder: Embedder | None = None) -> RAGIndex:
        return cls(VectorIndex.load(path, embedder), Path(path))

    @staticmethod
    def default_path(memory: Any, name: str) -> Path:
        """``<store>/rag/<name>``: the index lives beside the memory it complements."""
        return Path(memory.store.root) / "rag" / name

    def __len__(self) -> int:
        return len(self.index)

    def search(self, questions: Sequence[str], k: int) -> list[list[tuple[float, dict[str, Any]]]]:
        return self.index.search(questions, k)


class RAGContext:
    """Top-``k`` chunks per question, best first, joined into the context."""

    name = "rag"

    def __init__(self, index: RAGIndex, k: int = 3) -> None:
        if k < 1:
            raise ValueError(f"k: expected an int >= 1, got {k}")
        self.index = index
        self.k = k

    def contexts(self, questions: Sequence[str]) -> list[Context]:
        out = []
        for hits in self.index.search(questions, self.k):
            out.append(Context(
                text=render_context([r["text"] for _, r in hits]),
                sources=[r["source"] for _, r in hits],
                details={"retrieved": len(hits), "retrieval_scores": [round(s, 4) for s, _ in hits]},
            ))
        return out
