"""Seeded, deterministic initial centres: greedy k-means++ and, for large n, k-means||, over the blocks.

Randomness comes from `splitmix64(point key, seed, stream)`: a point's draw does not depend on how the
points are partitioned or ordered, so the same customers and seed give the same centres.

* Greedy k-means++ (Arthur & Vassilvitskii 2007, section 5; the variant scikit-learn ships): the first
  centre is a uniform draw; then each step draws `trials` = 2 + ln k candidates with probability
  proportional to D2 (squared distance to the nearest chosen centre) and keeps the one that lowers the
  total D2 most. Plain k-means++ often seeds two centres in one well-separated group of customers; the
  greedy choice rarely does. Draws proportional to D2 are exponential races: the points with the smallest
  -ln(U) / D2. One pass per centre: the pass that scores step j's candidates also draws, for each of
  them, the candidates of step j + 1 as if it were chosen. Automatic k seeds every k with the first k
  centres of one run for the largest k.
* k-means|| (Bahmani et al. 2012): a uniform first centre, then `rounds` rounds that keep every point
  independently with probability min(1, l * D2 / cost), l = oversampling * k; the candidates are weighted
  by the points nearest to them and reduced to k centres on the driver: `restarts` times greedy weighted
  k-means++ followed by weighted Lloyd iterations on the candidates; the lowest weighted cost wins.
"""
from __future__ import annotations

from functools import partial

import numpy as np
from pyspark import RDD

from jobs.common.errors import InputError
from jobs.kmeans_mr.kernels import Block, exact_sq_distances, nearest_two, own_sq_distances, splitmix64
from jobs.kmeans_mr.mapreduce import collect_blocks, map_state

# splitmix64 streams: one per use of randomness, so draws never repeat across uses.
_FIRST, _PLUS_PLUS, _PARALLEL = 0, 1_000, 2_000

_LOCAL_MAX_ITER = 100  # weighted Lloyd on the driver's few candidates stops long before

Entry = tuple[float, int, np.ndarray]  # (race value, point key, point)


def initial_centres(blocks: RDD, ks: list[int], seed: int, points: int, kmeans_pp_max_points: int,
                    rounds: int, oversampling: float, restarts: int) -> dict[int, np.ndarray]:
    """Initial centres for each k of `ks`: greedy k-means++ up to `kmeans_pp_max_points` points (one run
    for the largest k, whose first k centres serve every smaller k), k-means|| above."""
    if points < max(ks):
        raise InputError(f"k-means needs at least k = {max(ks)} customers, got {points}")
    if points <= kmeans_pp_max_points:
        centres = kmeans_plus_plus(blocks, max(ks), seed)
        return {k: centres[:k] for k in ks}
    return {k: kmeans_parallel(blocks, k, seed, rounds, oversampling, restarts) for k in ks}


def trials_for(k: int) -> int:
    return 2 + int(np.log(k))


def _fastest(block: Block, weights: np.ndarray, seed: int, stream: int, count: int) -> list[Entry]:
    """The block's `count` winners of the exponential race with these weights (zero weight never wins)."""
    if block.size == 0:
        return []
    with np.errstate(divide="ignore"):
        race = -np.log(splitmix64(block.keys, seed, stream)) / weights
    best = np.argsort(race, kind="stable")[:count]
    return [(float(race[i]), int(block.keys[i]), block.columns[:, i].copy()) for i in best
            if np.isfinite(race[i])]


def _overall_fastest(entries: list[Entry], count: int) -> list[np.ndarray]:
    return [point for _, _, point in sorted(entries, key=lambda e: (e[0], e[1]))[:count]]


def _not_enough(k: int, found: int) -> InputError:
    return InputError(f"k-means needs k = {k} distinct customers' feature vectors; only {found} exist")


def _first_centre(block: Block, seed: int) -> list[Entry]:
    return _fastest(block, np.ones(block.size), seed, _FIRST, 1)


def _distances_to(block: Block, point: np.ndarray) -> np.ndarray:
    return own_sq_distances(block.columns, point[None, :], np.zeros(block.size, np.intp))


def _greedy_pass(block: Block, d2: np.ndarray | None, newest: np.ndarray,
                 candidates: np.ndarray | None, seed: int, stream: int, trials: int,
                 draw: bool) -> tuple[np.ndarray, tuple]:
    """Add the newest centre to D2; score the candidates (total D2 if each were added); draw, per
    candidate, the next step's candidates as if it were added."""
    d2 = _distances_to(block, newest) if d2 is None else np.minimum(d2, _distances_to(block, newest))
    if candidates is None:
        options = [d2]
    else:
        options = [np.minimum(d2, column) for column in exact_sq_distances(block.columns, candidates).T]
    totals = [float(option.sum()) for option in options]
    draws = [_fastest(block, option, seed, stream, trials) if draw else [] for option in options]
    return d2, (totals, draws)


def kmeans_plus_plus(blocks: RDD, k: int, seed: int) -> np.ndarray:
    trials = trials_for(k)
    first = _overall_fastest([e for es in collect_blocks(blocks, partial(_first_centre, seed=seed))
                              for e in es], 1)
    if not first:
        raise _not_enough(k, 0)
    centres, candidates = first, None
    state = None
    try:
        for step in range(1, k + 1):
            draw = len(centres) + (candidates is not None) < k
            new, results = map_state(blocks, state, partial(
                _greedy_pass, newest=centres[-1], candidates=candidates, seed=seed,
                stream=_PLUS_PLUS + step, trials=trials, draw=draw))
            if state is not None:
                state.unpersist()
            state = new
            chosen = 0
            if candidates is not None:
                chosen = int(np.argmin(np.sum([totals for totals, _ in results], axis=0)))
                centres.append(candidates[chosen])
            if len(centres) == k:
                break
            drawn = _overall_fastest([e for _, draws in results for e in draws[chosen]], trials)
            if not drawn:
                raise _not_enough(k, len(centres))
            candidates = np.array(drawn)
    finally:
        if state is not None:
            state.unpersist()
    return np.array(centres)


def _update_costs(block: Block, d2: np.ndarray | None, new: np.ndarray) -> tuple[np.ndarray, float]:
    nearest, _ = nearest_two(block.columns, block.sq_norms, new)
    nearest_new = own_sq_distances(block.columns, new, nearest)
    d2 = nearest_new if d2 is None else np.minimum(d2, nearest_new)
    return d2, float(d2.sum())


def _sample(block: Block, d2: np.ndarray, rate: float, seed: int,
            stream: int) -> tuple[np.ndarray, np.ndarray]:
    keep = splitmix64(block.keys, seed, stream) < rate * d2
    return block.keys[keep], block.columns[:, keep].T.copy()


def _weights(block: Block, candidates: np.ndarray) -> np.ndarray:
    nearest, _ = nearest_two(block.columns, block.sq_norms, candidates)
    return np.bincount(nearest, minlength=len(candidates))


def kmeans_parallel(blocks: RDD, k: int, seed: int, rounds: int, oversampling: float,
                    restarts: int) -> np.ndarray:
    first = _overall_fastest([e for es in collect_blocks(blocks, partial(_first_centre, seed=seed))
                              for e in es], 1)
    if not first:
        raise _not_enough(k, 0)
    candidates = newest = np.array(first)
    state = None
    try:
        for r in range(rounds):
            new_state, costs = map_state(blocks, state, partial(_update_costs, new=newest))
            if state is not None:
                state.unpersist()
            state = new_state
            cost = float(np.sum(costs))
            if cost == 0.0:
                break
            drawn = collect_blocks(blocks, partial(_sample, rate=oversampling * k / cost, seed=seed,
                                                   stream=_PARALLEL + r), state)
            # A drawn point has D2 > 0, so it was never drawn before; sorting by key fixes the order.
            found = sorted(((int(key), point) for keys, points in drawn
                            for key, point in zip(keys, points, strict=True)), key=lambda e: e[0])
            if found:
                newest = np.array([point for _, point in found])
                candidates = np.vstack([candidates, newest])
    finally:
        if state is not None:
            state.unpersist()
    weights = np.sum(collect_blocks(blocks, partial(_weights, candidates=candidates)), axis=0)
    return reduce_candidates(candidates, weights.astype(np.float64), k, seed, restarts)


def reduce_candidates(points: np.ndarray, weights: np.ndarray, k: int, seed: int,
                      restarts: int) -> np.ndarray:
    """k centres for a few weighted points (driver side, seeded NumPy): the best of `restarts` runs of
    greedy weighted k-means++ followed by weighted Lloyd."""
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        centres, cost = _weighted_lloyd(points, weights, _weighted_plus_plus(points, weights, k, rng))
        if cost < best_cost:
            best, best_cost = centres, cost
    return best


def _weighted_plus_plus(points: np.ndarray, weights: np.ndarray, k: int,
                        rng: np.random.Generator) -> np.ndarray:
    trials = trials_for(k)
    chosen = [int(rng.choice(len(points), p=weights / weights.sum()))]
    d2 = exact_sq_distances(points.T, points[chosen])[:, 0]
    for _ in range(1, k):
        mass = weights * d2
        if mass.sum() <= 0.0:
            raise _not_enough(k, len(chosen))
        tried = rng.choice(len(points), size=trials, p=mass / mass.sum())
        options = np.minimum(d2[None, :], exact_sq_distances(points.T, points[tried]).T)
        best = int(np.argmin(options @ weights))
        chosen.append(int(tried[best]))
        d2 = options[best]
    return points[chosen].copy()


def _weighted_lloyd(points: np.ndarray, weights: np.ndarray,
                    centres: np.ndarray) -> tuple[np.ndarray, float]:
    labels = None
    for _ in range(_LOCAL_MAX_ITER):
        distances = exact_sq_distances(points.T, centres)
        new_labels = distances.argmin(axis=1)
        if labels is not None and np.array_equal(labels, new_labels):
            break
        labels = new_labels
        for j in range(len(centres)):
            mass = weights[labels == j]
            if mass.sum() > 0:
                centres[j] = mass @ points[labels == j] / mass.sum()
    cost = float(weights @ exact_sq_distances(points.T, centres).min(axis=1))
    return centres, cost
