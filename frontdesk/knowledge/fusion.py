"""Reciprocal rank fusion: one ranking from several, using ranks only (never raw scores).

Each item scores the sum over the rankings that contain it of `1 / (k + rank)` (rank from 1), so
an item near the top of both lists beats one at the top of a single list, and scores on different
scales (BM25, cosine) never need calibrating against each other. k = 60 as in Cormack et al.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

RRF_K = 60

T = TypeVar("T", bound=Hashable)


@dataclass(slots=True)
class Fused(Generic[T]):
    item: T
    score: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)  # ranking name -> rank (from 1)


def reciprocal_rank_fusion(rankings: dict[str, Sequence[T]], *, k: int = RRF_K) -> list[Fused[T]]:
    """Items of every ranking, best fused score first (ties: best single rank, then first seen)."""
    fused: dict[T, Fused[T]] = {}
    for name, ranking in rankings.items():
        for rank, item in enumerate(ranking, start=1):
            entry = fused.setdefault(item, Fused(item))
            if name not in entry.ranks:
                entry.ranks[name] = rank
                entry.score += 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(fused)}
    return sorted(fused.values(), key=lambda f: (-f.score, min(f.ranks.values()), order[f.item]))
