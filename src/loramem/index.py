"""A small persistent vector index: faiss inner product over L2-normalised embeddings (cosine similarity).

Used by the RAG reader (chunks) and by the embedding router (module keys). Saved as a folder::

    index.faiss     the faiss IndexFlatIP
    records.jsonl   one JSON object per vector (the chunk text, the module id, ...), in vector order
    meta.json       embedder name, dimension, count

Saving builds the folder aside and renames it into place, so a reader never sees half an index.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._fs import fsync_dir, fsync_tree
from .embed import Embedder


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise ImportError("vector search needs faiss: pip install faiss-cpu") from exc
    return faiss


class VectorIndex:
    """Records with an embedding each; ``search`` returns the top-k records per query with cosine scores."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder or Embedder.shared()
        self.records: list[dict[str, Any]] = []
        self._index: Any = None

    def __len__(self) -> int:
        return len(self.records)

    def add(self, texts: Sequence[str], records: Sequence[dict[str, Any]] | None = None) -> None:
        """Embed ``texts`` and add them; ``records`` (default ``{"text": t}``) is what search returns."""
        texts = list(texts)
        recs = [dict(r) for r in records] if records is not None else [{"text": t} for t in texts]
        if len(recs) != len(texts):
            raise ValueError(f"records: expected {len(texts)} entries (one per text), got {len(recs)}")
        if not texts:
            return
        self.add_vectors(self.embedder.encode(texts), recs)

    def add_vectors(self, vectors: np.ndarray, records: Sequence[dict[str, Any]]) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(records):
            raise ValueError(f"vectors: expected shape ({len(records)}, dim), got {vectors.shape}")
        if self._index is None:
            self._index = _faiss().IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)
        self.records.extend(dict(r) for r in records)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[float, dict[str, Any]]]]:
        """Top-``k`` (score, record) per query, best first; empty lists when the index is empty."""
        if k < 1:
            raise ValueError(f"k: expected an int >= 1, got {k}")
        queries = list(queries)
        if not self.records or not queries:
            return [[] for _ in queries]
        return self.search_vectors(self.embedder.encode(queries), k)

    def search_vectors(self, vectors: np.ndarray, k: int) -> list[list[tuple[float, dict[str, Any]]]]:
        if not self.records:
            return [[] for _ in range(len(vectors))]
        scores, ids = self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self.records)))
        return [
            [(float(s), self.records[int(i)]) for s, i in zip(srow, irow) if i >= 0] for srow, irow in zip(scores, ids)
        ]

    # --- persistence ------------------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike[str]) -> Path:
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            if self._index is not None:
                _faiss().write_index(self._index, str(tmp / "index.faiss"))
            with open(tmp / "records.jsonl", "w", encoding="utf-8") as f:
                for r in self.records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            meta = {"embedder": self.embedder.name, "count": len(self.records),
                    "dim": int(self._index.d) if self._index is not None else None}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            fsync_tree(tmp)
            old = None
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.rename(folder, old)
            os.rename(tmp, folder)
            fsync_dir(folder.parent)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str], embedder: Embedder | None = None) -> VectorIndex:
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no vector index at {folder} (missing meta.json)")
        meta = json.loads(meta_path.read_text())
        index = cls(embedder or Embedder.shared(meta["embedder"]))
        with open(folder / "records.jsonl", encoding="utf-8") as f:
            index.records = [json.loads(line) for line in f if line.strip()]
        if index.records:
            index._index = _faiss().read_index(str(folder / "index.faiss"))
            if index._index.ntotal != len(index.records):
                raise ValueError(
                    f"vector index at {folder} is inconsistent: {index._index.ntotal} vectors, {len(index.records)} records"
                )
        return index
