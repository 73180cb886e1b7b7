"""Text embeddings for vector retrieval: the `Embedder` protocol and the WordLlama model.

An embedder turns texts into L2-normalised float32 vectors, so that a dot product is the cosine
similarity. `chunk_vectors` and `question_vector` decide what is embedded: content words only,
and for a chunk its text's vector mixed with its heading's. The default embedder is WordLlama's
`l2_supercat` static model (token embeddings averaged), loaded from the files the `wordllama`
package ships (weights in `weights/`, tokenizer in `tokenizers/`), never from the network:
loading is lazy, once per process, behind a lock.

Embedding is CPU work: async callers run it with `await asyncio.to_thread(embedder.embed, ...)`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from frontdesk.knowledge.text import STOPWORDS

log = logging.getLogger(__name__)

Vectors = NDArray[np.float32]

MODEL_CONFIG = "l2_supercat"
MODEL_DIM = 256  # the dimension the shipped weights have
EMBEDDING_DIM = 256  # Matryoshka: 64 and 128 are truncations of the same weights
MAX_EMBED_CHARS = 4000  # longer texts are cut: an average of more tokens says little more
HEADING_WEIGHT = 0.3  # share of a chunk's vector that is its heading's (see chunk_vectors)
_WORD = re.compile(r"\w+", re.UNICODE)


class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """`(len(texts), dim)` float32, each row of norm 1 (or all zeros for an empty text)."""
        ...


def content_words(text: str) -> str:
    """The text without stop words and punctuation (case kept: the tokenizer is cased).

    A static model averages token vectors, so "how", "do", "the"… would pull every text
    towards the same point; without them, a question and its answer share more of their mean.
    """
    return " ".join(w for w in _WORD.findall(text) if w.lower() not in STOPWORDS)


def chunk_vectors(embedder: Embedder, chunks: Sequence[tuple[str, str]]) -> Vectors:
    """Vectors of (heading path, text) chunks: the text's and the heading's, mixed.

    The heading names the section's topic in a few words; averaged into a long text it would
    weigh little, so it gets a fixed share (`HEADING_WEIGHT`) of the chunk's vector. Both parts
    are unit vectors, so a dot product with a unit question vector is the same mix of the two
    cosine similarities.
    """
    if not chunks:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    bodies = embedder.embed([content_words(f"{h}\n{t}") for h, t in chunks])
    headings = embedder.embed([content_words(h) for h, _ in chunks])
    mixed = (1 - HEADING_WEIGHT) * bodies + HEADING_WEIGHT * headings
    return mixed.astype(np.float32)


def question_vector(embedder: Embedder, question: str) -> NDArray[np.float32]:
    vector: NDArray[np.float32] = embedder.embed([content_words(question)])[0]
    return vector


class EmbedderUnavailable(RuntimeError):
    """The embedding model could not be loaded (package or files missing)."""


def normalise(vectors: NDArray[Any]) -> Vectors:
    """Rows scaled to norm 1; rows of norm 0 stay 0 (so they match nothing)."""
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _load_wordllama(dim: int) -> Any:
    """The WordLlama model from the package's own files (no download, ever)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EmbedderUnavailable("the wordllama package is not installed") from exc
    finally:
        # Importing wordllama calls logging.basicConfig(); the app owns logging configuration.
        root.handlers[:], root.level = handlers, level
    package_dir = Path(wordllama.__file__).parent
    try:
        return wordllama.WordLlama.load(
            config=MODEL_CONFIG,
            cache_dir=package_dir,  # holds tokenizers/<config>_tokenizer_config.json
            dim=MODEL_DIM,
            trunc_dim=dim if dim != MODEL_DIM else None,
            disable_download=True,
        )
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise EmbedderUnavailable(f"the wordllama model could not be loaded: {exc}") from exc


class WordLlamaEmbedder:
    """WordLlama `l2_supercat`, truncated to `dim` (64, 128 or 256), loaded on first use."""

    name = f"wordllama-{MODEL_CONFIG}"

    def __init__(self, dim: int = EMBEDDING_DIM) -> None:
        if dim not in (64, 128, 256):
            raise ValueError("dim must be 64, 128 or 256")
        self._dim = dim
        self._model: Any = None
        self._error: EmbedderUnavailable | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._dim

    def _get_model(self) -> Any:
        """The model, loaded by the first caller; a failure is remembered, not retried."""
        if self._model is None:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if self._model is None:
                    try:
                        self._model = _load_wordllama(self._dim)
                    except EmbedderUnavailable as exc:
                        self._error = exc
                        log.error("embedding model unavailable: vector retrieval is off: %s", exc)
                        raise
                    log.info("embedding model loaded", extra={"model": self.name, "dim": self._dim})
        return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        model = self._get_model()
        raw = model.embed([t[:MAX_EMBED_CHARS] for t in texts], norm=False, batch_size=64)
        return normalise(raw)


async def embed_question(embedder: Embedder, question: str) -> NDArray[np.float32] | None:
    """The question's vector, computed in a worker thread; None without a model."""
    try:
        return await asyncio.to_thread(question_vector, embedder, question)
    except EmbedderUnavailable:
        return None


_default: WordLlamaEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> WordLlamaEmbedder:
    """The process-wide embedder (the model itself loads on the first `embed`)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = WordLlamaEmbedder()
    return _default
