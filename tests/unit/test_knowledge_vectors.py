"""Embeddings (WordLlama, offline), the exact vector index and its cache, rank fusion."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from frontdesk.knowledge import embed
from frontdesk.knowledge.embed import (
    EmbedderUnavailable,
    WordLlamaEmbedder,
    chunk_vectors,
    content_words,
    default_embedder,
    question_vector,
)
from frontdesk.knowledge.fusion import reciprocal_rank_fusion
from frontdesk.knowledge.vectors import IndexCache, VectorIndex, blob_fits, from_blobs, to_blob


def test_embeddings_are_unit_float32_rows() -> None:
    embedder = default_embedder()
    assert embedder is default_embedder()
    vectors = embedder.embed(["Run make run to start the server.", "", "Shipping takes days."])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim)
    norms = np.linalg.norm(vectors, axis=1)
    assert norms[0] == pytest.approx(1, abs=1e-5) and norms[2] == pytest.approx(1, abs=1e-5)
    assert norms[1] == 0  # an empty text matches nothing
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_similar_meaning_scores_higher() -> None:
    embedder = default_embedder()
    question = question_vector(embedder, "How do I start the server?")
    chunks = chunk_vectors(
        embedder,
        [
            ("Quickstart › Install and run", "Run `make run` to launch FrontDesk locally."),
            ("Weather", "Mars has a thin atmosphere and dust storms."),
        ],
    )
    related, unrelated = chunks @ question
    assert related > unrelated + 0.2


def test_content_words_drop_stop_words_and_keep_case() -> None:
    assert content_words("How do I reset my Password?") == "reset Password"


def test_the_model_loads_once_from_the_package_without_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import wordllama.wordllama as loader  # type: ignore[import-untyped]

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model must not be downloaded")

    monkeypatch.setattr(loader.requests, "get", no_network)
    calls: list[int] = []
    real = embed._load_wordllama

    def counting(dim: int) -> Any:
        calls.append(dim)
        return real(dim)

    monkeypatch.setattr(embed, "_load_wordllama", counting)
    embedder = WordLlamaEmbedder(dim=64)
    barrier = threading.Barrier(4)

    def first_use(_: int) -> tuple[int, ...]:
        barrier.wait()
        return embedder.embed(["hello world"]).shape

    with ThreadPoolExecutor(4) as pool:
        shapes = list(pool.map(first_use, range(4)))
    assert shapes == [(1, 64)] * 4 and calls == [64]


def test_a_missing_model_is_reported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def missing(dim: int) -> Any:
        calls.append(dim)
        raise EmbedderUnavailable("no model here")

    monkeypatch.setattr(embed, "_load_wordllama", missing)
    embedder = WordLlamaEmbedder()
    for _ in range(2):
        with pytest.raises(EmbedderUnavailable):
            embedder.embed(["x"])
    assert calls == [256]


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_exact_top_k_matches_a_full_sort() -> None:
    rng = np.random.default_rng(7)
    matrix = _unit(rng.normal(size=(500, 32)))
    ids = list(rng.permutation(10_000)[:500])
    index = VectorIndex.build("v1", ids, matrix)
    query = matrix[10]
    hits = index.search(query, 5)
    expected = np.argsort(-(matrix @ query))[:5]
    assert [h.chunk_id for h in hits] == [ids[i] for i in expected]
    assert hits[0].similarity == pytest.approx(1, abs=1e-5)
    assert len(index.search(query, 1000)) == 500
    assert VectorIndex.build("v", [], np.zeros((0, 32), np.float32)).search(query, 3) == []
    sims = index.similarities(query, [ids[10], ids[3], -1])
    assert set(sims) == {ids[10], ids[3]}
    assert sims[ids[3]] == pytest.approx(float(matrix[3] @ query), abs=1e-5)


def test_vectors_are_stored_as_float16() -> None:
    vector = _unit(np.arange(1, 9, dtype=np.float32)[None, :])[0]
    blob = to_blob(vector)
    assert len(blob) == 16 and blob_fits(blob, 8) and not blob_fits(blob, 16)
    assert not blob_fits(None, 8)
    restored = from_blobs([blob, blob], 8)
    assert restored.dtype == np.float32 and restored.shape == (2, 8)
    np.testing.assert_allclose(restored[0], vector, atol=1e-3)


def test_index_cache_is_per_site_version_and_size() -> None:
    cache = IndexCache(max_sites=2)
    matrix = np.ones((1, 4), np.float32)
    cache.put("a", VectorIndex.build("v1", [1], matrix))
    assert cache.get("a", "v1", 4) is not None
    assert cache.get("a", "v2", 4) is None  # the site's knowledge changed
    assert cache.get("a", "v1", 8) is None  # another embedding size
    cache.put("b", VectorIndex.build("v1", [1], matrix))
    cache.get("a", "v1", 4)
    cache.put("c", VectorIndex.build("v1", [1], matrix))
    assert cache.get("b", "v1", 4) is None  # least recently used
    assert cache.get("a", "v1", 4) is not None
    cache.invalidate("a")
    assert cache.get("a", "v1", 4) is None


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion({"lexical": [1, 2, 3], "vector": [3, 4, 1]})
    assert [f.item for f in fused] == [1, 3, 2, 4]
    assert fused[0].ranks == {"lexical": 1, "vector": 3}
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 63)
    assert fused[3].ranks == {"vector": 2}
    assert reciprocal_rank_fusion({"a": [], "b": []}) == []
    # Ties (same ranks in different lists) keep the first ranking's order.
    assert [f.item for f in reciprocal_rank_fusion({"a": [7], "b": [8]})] == [7, 8]
