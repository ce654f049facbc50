"""Training: initial centres + Lloyd iterations for a fixed k, or the choice of k over a range.

K-means finds a local optimum that depends on its start, so every k is fitted from `restarts` seeded
starts (restart r draws with seed + r * RESTART_SEED_STEP) and the fit with the lowest cost is kept.

Automatic k (kmeans.k: auto): every k of `auto_k` is fitted. The elbow is the k whose point
of the cost curve lies farthest below the straight line from the first to the last point (both axes
scaled to 0..1). The silhouette of each fit is computed on a seeded sample of customers. The chosen k is
the one with the highest silhouette among the elbow and its two neighbours (the smaller k on a tie):
the elbow says where more segments stop paying off, the silhouette which nearby k separates best.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from pyspark import RDD

from jobs.kmeans_mr.init import initial_centres
from jobs.kmeans_mr.kernels import Block, exact_sq_distances, nearest_two, splitmix64
from jobs.kmeans_mr.mapreduce import Fit, collect_blocks, fit_kmeans
from jobs.kmeans_mr.settings import KMeansSettings

_SILHOUETTE_SAMPLE = 3_000  # splitmix64 stream of the silhouette sample
RESTART_SEED_STEP = 1_000_003


@dataclass(frozen=True)
class CurvePoint:
    k: int
    cost: float
    silhouette: float
    iterations: int


@dataclass
class Training:
    k: int
    fit: Fit
    curve: list[CurvePoint] = field(default_factory=list)


def train(blocks: RDD, conf: KMeansSettings, points: int) -> Training:
    ks = [conf.k] if conf.k != "auto" else list(range(conf.auto_k.min_k, conf.auto_k.max_k + 1))
    starts = [initial_centres(blocks, ks, conf.seed + r * RESTART_SEED_STEP, points,
                              conf.init.kmeans_pp_max_points, conf.init.parallel_rounds,
                              conf.init.oversampling, conf.init.local_restarts)
              for r in range(conf.restarts)]
    fits = {k: min((fit_kmeans(blocks, start[k], conf.max_iter, conf.tol, conf.prune) for start in starts),
                   key=lambda fit: fit.cost)
            for k in ks}
    if conf.k != "auto":
        return Training(conf.k, fits[conf.k])
    sample = sample_points(blocks, conf.auto_k.silhouette_sample, points, conf.seed)
    curve = []
    for k in ks:
        labels, _ = nearest_two(sample.T, np.einsum("ij,ij->i", sample, sample), fits[k].centres)
        curve.append(CurvePoint(k, fits[k].cost, silhouette(sample, labels), fits[k].iterations))
    k = choose_k(curve)
    return Training(k, fits[k], curve)


def choose_k(curve: list[CurvePoint]) -> int:
    ks = np.array([p.k for p in curve], dtype=np.float64)
    costs = np.array([p.cost for p in curve])
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    spread = costs.max() - costs.min()
    y = (costs - costs.min()) / spread if spread > 0 else np.zeros_like(costs)
    chord = y[0] + (y[-1] - y[0]) * x
    elbow = int(np.argmax(chord - y))
    near = curve[max(elbow - 1, 0):elbow + 2]
    return max(near, key=lambda p: (p.silhouette, -p.k)).k


def sample_points(blocks: RDD, size: int, points: int, seed: int) -> np.ndarray:
    """About `size` customers, drawn by key (independent of partitioning), as rows."""
    rate = min(1.0, size / max(points, 1))
    parts = collect_blocks(blocks, partial(_sampled, rate=rate, seed=seed))
    return np.concatenate([p for p in parts if len(p)] or [np.empty((0, 0))])


def _sampled(block: Block, rate: float, seed: int) -> np.ndarray:
    keep = splitmix64(block.keys, seed, _SILHOUETTE_SAMPLE) < rate
    order = np.argsort(block.keys[keep], kind="stable")
    return block.columns[:, keep][:, order].T.copy()


def silhouette(points: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (Rousseeuw 1987) of labelled points; a point alone in its cluster scores 0."""
    if len(points) < 2 or len(np.unique(labels)) < 2:
        return 0.0
    distances = np.sqrt(exact_sq_distances(points.T, points))
    clusters, index = np.unique(labels, return_inverse=True)
    sizes = np.bincount(index)
    totals = distances @ (index[:, None] == np.arange(len(clusters))[None, :])
    own_size = sizes[index]
    rows = np.arange(len(points))
    with np.errstate(invalid="ignore", divide="ignore"):
        within = totals[rows, index] / (own_size - 1)
        mean_to = totals / sizes[None, :]
    mean_to[rows, index] = np.inf
    between = mean_to.min(axis=1)
    scores = np.where(own_size > 1, (between - within) / np.maximum(within, between), 0.0)
    return float(np.nan_to_num(scores).mean())
