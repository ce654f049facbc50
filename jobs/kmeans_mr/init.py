"""Seeded, deterministic initial centres: k-means++ (Arthur & Vassilvitskii) and, for large n, k-means||
(Bahmani et al.), both over the cached blocks.

Randomness comes from `splitmix64(point key, seed, stream)`: a point's draw does not depend on how the
points are partitioned or ordered, so the same customers and seed give the same centres.

* k-means++, one pass per centre: each point keeps its squared distance D2 to the nearest chosen centre;
  the next centre is the point minimising -ln(U) / D2 (an exponential race: it is drawn with
  probability proportional to D2). The first centre is drawn uniformly the same way (D2 = 1).
* k-means||: after a uniform first centre, `rounds` rounds each keep every point independently with
  probability min(1, l * D2 / cost), l = oversampling * k; the candidates are weighted by the points
  nearest to them and reduced to k centres by weighted k-means++ on the driver (seeded NumPy).
"""
from __future__ import annotations

from functools import partial

import numpy as np
from pyspark import RDD

from jobs.common.errors import InputError
from jobs.kmeans_mr.kernels import Block, nearest_two, own_sq_distances, splitmix64
from jobs.kmeans_mr.mapreduce import collect_blocks, map_blocks

# splitmix64 streams: one per use of randomness, so draws never repeat across uses.
_FIRST, _PLUS_PLUS, _PARALLEL = 0, 1_000, 2_000


def initial_centres(blocks: RDD, k: int, seed: int, points: int, kmeans_pp_max_points: int,
                    rounds: int, oversampling: float) -> np.ndarray:
    """k-means++ up to `kmeans_pp_max_points` points, k-means|| above."""
    if points < k:
        raise InputError(f"k-means needs at least k = {k} customers, got {points}")
    if points <= kmeans_pp_max_points:
        return kmeans_plus_plus(blocks, k, seed)
    return kmeans_parallel(blocks, k, seed, rounds, oversampling)


def _race(block: Block, weights: np.ndarray, seed: int, stream: int) -> tuple[float, int, np.ndarray]:
    """The block's winner of an exponential race: (-ln U / w, key, point); inf when all weights are 0."""
    if block.size == 0:
        return np.inf, 0, np.empty(0)
    with np.errstate(divide="ignore"):
        race = -np.log(splitmix64(block.keys, seed, stream)) / weights
    i = int(race.argmin())
    return float(race[i]), int(block.keys[i]), block.columns[:, i].copy()


def _winner(entries: list[tuple[float, int, np.ndarray]], what: str, k: int) -> np.ndarray:
    score, _, point = min(entries, key=lambda e: (e[0], e[1]))
    if not np.isfinite(score):
        raise InputError(f"k-means needs k = {k} distinct customers' feature vectors; {what}")
    return point


def _first_centre(element: Block | tuple[Block, np.ndarray], seed: int) -> tuple:
    block = element if isinstance(element, Block) else element[0]
    return _race(block, np.ones(block.size), seed, _FIRST)


def _plus_plus_pass(element: Block | tuple[Block, np.ndarray], newest: np.ndarray, seed: int,
                    stream: int) -> tuple[tuple[Block, np.ndarray], tuple]:
    block, d2 = (element, np.full(element.size, np.inf)) if isinstance(element, Block) else element
    d2 = np.minimum(d2, own_sq_distances(block.columns, newest[None, :], np.zeros(block.size, np.intp)))
    return (block, d2), _race(block, d2, seed, stream)


def kmeans_plus_plus(blocks: RDD, k: int, seed: int) -> np.ndarray:
    centres = [_winner(collect_blocks(blocks, partial(_first_centre, seed=seed)), "there are none", k)]
    state = blocks
    try:
        for j in range(1, k):
            new, entries = map_blocks(state, partial(_plus_plus_pass, newest=centres[-1], seed=seed,
                                                     stream=_PLUS_PLUS + j))
            if state is not blocks:
                state.unpersist()
            state = new
            centres.append(_winner(entries, f"only {j} were found", k))
    finally:
        if state is not blocks:
            state.unpersist()
    return np.array(centres)


def _nearest_sq(block: Block, centres: np.ndarray) -> np.ndarray:
    nearest, _ = nearest_two(block.columns, block.sq_norms, centres)
    return own_sq_distances(block.columns, centres, nearest)


def _update_costs(element: Block | tuple[Block, np.ndarray],
                  new: np.ndarray) -> tuple[tuple[Block, np.ndarray], float]:
    block, d2 = (element, None) if isinstance(element, Block) else element
    nearest_new = _nearest_sq(block, new)
    d2 = nearest_new if d2 is None else np.minimum(d2, nearest_new)
    return (block, d2), float(d2.sum())


def _sample(element: tuple[Block, np.ndarray], rate: float, seed: int,
            stream: int) -> tuple[np.ndarray, np.ndarray]:
    block, d2 = element
    keep = splitmix64(block.keys, seed, stream) < rate * d2
    return block.keys[keep], block.columns[:, keep].T.copy()


def _weights(block: Block, candidates: np.ndarray) -> np.ndarray:
    nearest, _ = nearest_two(block.columns, block.sq_norms, candidates)
    return np.bincount(nearest, minlength=len(candidates))


def kmeans_parallel(blocks: RDD, k: int, seed: int, rounds: int, oversampling: float) -> np.ndarray:
    candidates = np.array([_winner(collect_blocks(blocks, partial(_first_centre, seed=seed)),
                                   "there are none", k)])
    newest = candidates
    state = blocks
    try:
        for r in range(rounds):
            new_state, costs = map_blocks(state, partial(_update_costs, new=newest))
            if state is not blocks:
                state.unpersist()
            state = new_state
            cost = float(np.sum(costs))
            if cost == 0.0:
                break
            drawn = collect_blocks(state, partial(_sample, rate=oversampling * k / cost, seed=seed,
                                                  stream=_PARALLEL + r))
            # A drawn point has D2 > 0, so it was never drawn before; sorting by key fixes the order.
            found = sorted(((int(key), point) for ks, ps in drawn for key, point in zip(ks, ps, strict=True)),
                           key=lambda entry: entry[0])
            if not found:
                continue
            newest = np.array([point for _, point in found])
            candidates = np.vstack([candidates, newest])
    finally:
        if state is not blocks:
            state.unpersist()
    weights = np.sum(collect_blocks(blocks, partial(_weights, candidates=candidates)), axis=0)
    return weighted_plus_plus(candidates, weights.astype(np.float64), k, seed)


def weighted_plus_plus(points: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ on a few weighted points (driver side)."""
    rng = np.random.default_rng(seed)
    chosen = [int(rng.choice(len(points), p=weights / weights.sum()))]
    d2 = own_sq_distances(points.T, points[chosen], np.zeros(len(points), np.intp))
    for _ in range(1, k):
        mass = weights * d2
        if mass.sum() <= 0.0:
            raise InputError(f"k-means needs k = {k} distinct customers' feature vectors; "
                             f"only {len(chosen)} were found")
        chosen.append(int(rng.choice(len(points), p=mass / mass.sum())))
        d2 = np.minimum(d2, own_sq_distances(points.T, points[chosen[-1:]], np.zeros(len(points), np.intp)))
    return points[chosen].copy()
