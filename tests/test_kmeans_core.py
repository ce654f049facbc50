"""The map/reduce K-means itself: exactness against a plain NumPy Lloyd and Spark MLlib, pruning,
seeded initialisation, empty clusters."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.mllib.common import _java2py, _py2java, callMLlibFunc
from pyspark.mllib.linalg import _convert_to_vector

from jobs.kmeans_mr.init import kmeans_parallel, kmeans_plus_plus
from jobs.kmeans_mr.kernels import exact_sq_distances, nearest_two, own_sq_distances
from jobs.kmeans_mr.mapreduce import (
    blocks_from_frame,
    collect_blocks,
    count_points,
    fit_kmeans,
    nearest_centres,
)
from jobs.kmeans_mr.train import CurvePoint, choose_k, silhouette


def blobs(n: int, d: int, k: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 3.0
    truth = rng.integers(0, k, n)
    return centres[truth] + rng.normal(size=(n, d)) * spread, truth


def lloyd_reference(points: np.ndarray, centres: np.ndarray, max_iter: int, tol: float):
    """Plain Lloyd from the textbook: all n x k distances, argmin, means; an empty cluster keeps its
    centre. Returns the centres, the labels against them and the cost of every iteration."""
    costs = []
    for _ in range(max_iter):
        d2 = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = d2.argmin(axis=1)
        costs.append(d2[np.arange(len(points)), labels].sum())
        moved = np.array([points[labels == j].mean(axis=0) if (labels == j).any() else centres[j]
                          for j in range(len(centres))])
        shift = np.sqrt(((moved - centres) ** 2).sum(axis=1)).max()
        centres = moved
        if shift <= tol:
            break
    final = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    return centres, final, costs


def frame_of(spark, points: np.ndarray):
    data = pd.DataFrame(points, columns=columns_of(points))
    data.insert(0, "customer_id", [f"C{i:06d}" for i in range(len(points))])
    data.insert(1, "key", np.arange(len(points), dtype=np.int64) * 7919 + 13)
    return spark.createDataFrame(data)


def columns_of(points: np.ndarray) -> list[str]:
    return [f"f{j}" for j in range(points.shape[1])]


def cached_blocks(spark, points: np.ndarray, rows_per_block: int = 1000):
    return blocks_from_frame(frame_of(spark, points), columns_of(points), "key", rows_per_block)


def assignments(spark, points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    rows = (nearest_centres(frame_of(spark, points), columns_of(points), centres)
            .select("customer_id", "centre").toPandas().sort_values("customer_id"))
    return rows["centre"].to_numpy()


@pytest.fixture(scope="module")
def overlapping(spark):
    """Blobs that overlap enough to take a dozen iterations with points moving between clusters, as
    cached blocks (several per partition), and initial centres drawn from the points."""
    points, _ = blobs(1500, 4, 5, spread=1.4, seed=3)
    start = points[np.random.default_rng(3).choice(len(points), 6, replace=False)]
    blocks = cached_blocks(spark, points, rows_per_block=400)
    yield points, start, blocks
    blocks.unpersist()


@pytest.mark.parametrize("prune", [True, False])
def test_fit_same_initial_centres_matches_numpy_lloyd(spark, overlapping, prune):
    points, start, blocks = overlapping
    fit = fit_kmeans(blocks, start, max_iter=100, tol=0.0, prune=prune)
    centres, labels, costs = lloyd_reference(points, start, 100, 0.0)

    assert fit.converged and fit.iterations == len(costs) > 5
    np.testing.assert_allclose(fit.centres, centres, rtol=0, atol=1e-9)
    np.testing.assert_allclose([i.cost for i in fit.history], costs, rtol=1e-9)
    np.testing.assert_array_equal(assignments(spark, points, fit.centres), labels)
    assert sum(i.reassigned for i in fit.history[1:]) > 0 or not prune


def test_fit_same_initial_centres_matches_mllib(spark, overlapping):
    points, start, blocks = overlapping
    fit = fit_kmeans(blocks, start, max_iter=100, tol=0.0, prune=True)
    sc = spark.sparkContext
    vectors = sc.parallelize(list(points), 2).map(_convert_to_vector)
    # What pyspark.mllib.clustering.KMeans.train(..., initialModel=..., epsilon=0) calls, one level
    # down so that MLlib's iteration count and training cost are visible.
    model = callMLlibFunc("trainKMeansModel", vectors, len(start), 100, "random", None, 2, 0.0,
                          [_convert_to_vector(c) for c in start], "euclidean")
    mllib_centres = np.array([c.toArray() for c in _java2py(sc, model.clusterCenters())])
    mllib_labels = np.array(_java2py(sc, model.predict(_py2java(sc, vectors))).collect())

    assert model.numIter() == fit.iterations
    np.testing.assert_allclose(fit.centres, mllib_centres, rtol=1e-6, atol=1e-12)
    assert fit.cost == pytest.approx(model.trainingCost(), rel=1e-6)
    np.testing.assert_array_equal(assignments(spark, points, fit.centres), mllib_labels)


def test_pruning_when_clusters_separated_skips_most_distances(spark):
    points, _ = blobs(2000, 6, 8, spread=0.4, seed=11)
    start = points[np.random.default_rng(15).choice(len(points), 8, replace=False)]
    blocks = cached_blocks(spark, points)
    pruned = fit_kmeans(blocks, start, max_iter=50, tol=0.0, prune=True)
    plain = fit_kmeans(blocks, start, max_iter=50, tol=0.0, prune=False)
    blocks.unpersist()

    lloyd = pruned.iterations * len(points) * 8
    assert pruned.distances + pruned.skipped == lloyd
    assert pruned.skipped / lloyd > 0.6
    assert plain.skipped == 0 and plain.distances == lloyd
    # Pruning never changes a result: the same centres to the last bit, the same costs.
    np.testing.assert_array_equal(pruned.centres, plain.centres)
    assert [i.cost for i in pruned.history] == [i.cost for i in plain.history]


def test_fit_when_a_centre_wins_no_point_keeps_it_in_place(spark):
    points, truth = blobs(600, 3, 2, spread=0.3, seed=5)
    far = np.array([[50.0, 50.0, 50.0]])
    start = np.vstack([points[truth == 0][:1], points[truth == 1][:1], far])
    blocks = cached_blocks(spark, points)
    fit = fit_kmeans(blocks, start, max_iter=30, tol=0.0, prune=True)
    blocks.unpersist()
    centres, _, costs = lloyd_reference(points, start, 30, 0.0)

    assert all(i.empty == 1 for i in fit.history)
    np.testing.assert_array_equal(fit.centres[2], far[0])
    np.testing.assert_allclose(fit.centres, centres, atol=1e-9)
    assert fit.iterations == len(costs)


def test_passes_when_point_sets_alternate_read_each_sets_own_points(spark):
    # Python workers keep one point set's decoded blocks between tasks; alternating sets must never
    # read another set's (or a stale) copy.
    sets = [blobs(700, 3, 2, spread=1.0, seed=s)[0] for s in (1, 2)]
    cached = [cached_blocks(spark, points, rows_per_block=300) for points in sets]
    for _ in range(2):
        for points, blocks in zip(sets, cached, strict=True):
            assert count_points(blocks) == len(points)
            # A lambda travels by value: workers cannot import the test module.
            sums = np.sum(collect_blocks(blocks, lambda block: block.columns.sum(axis=1)), axis=0)
            np.testing.assert_allclose(sums, points.sum(axis=0), rtol=1e-12)
    for blocks in cached:
        blocks.unpersist()


def test_nearest_two_when_points_tie_picks_lowest_centre(spark):
    # Integer data: every distance is exact, so these are true ties the screening must hand to the
    # exact comparison.
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 5.0], [1.0, 0.0]])
    points = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 0.0], [1.0, 2.5], [0.5, 0.0]])
    nearest, lower = nearest_two(points.T.copy(), (points ** 2).sum(axis=1), centres)
    exact = exact_sq_distances(points.T.copy(), centres)

    np.testing.assert_array_equal(nearest, [3, 3, 1, 2, 0])
    np.testing.assert_array_equal(nearest, exact.argmin(axis=1))
    second = np.sort(np.sqrt(exact), axis=1)[:, 1]
    assert np.all(lower <= second) and np.all(lower >= second - 1e-12)


def test_exact_distances_when_computed_per_point_are_bitwise_equal():
    rng = np.random.default_rng(0)
    columns = rng.normal(size=(7, 500)) * 1e3
    centres = rng.normal(size=(9, 7)) * 1e3
    assignment = rng.integers(0, 9, 500)
    full = exact_sq_distances(columns, centres)
    np.testing.assert_array_equal(own_sq_distances(columns, centres, assignment),
                                  full[np.arange(500), assignment])


@pytest.mark.parametrize("init", ["kmeans_plus_plus", "kmeans_parallel"])
def test_init_same_seed_same_centres_whatever_the_partitioning(spark, init):
    points, _ = blobs(1000, 4, 5, spread=0.5, seed=21)
    run = {"kmeans_plus_plus": lambda b, seed: kmeans_plus_plus(b, 5, seed),
           "kmeans_parallel": lambda b, seed: kmeans_parallel(b, 5, seed, rounds=2, oversampling=2.0,
                                                               restarts=3)}[init]
    few, many = cached_blocks(spark, points, 1000), cached_blocks(spark, points, 150)
    first, again, other = run(few, 7), run(many, 7), run(few, 8)
    few.unpersist()
    many.unpersist()

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # The greedy seeding puts one centre in each of the well-separated planted blobs.
    nearest_blob = exact_sq_distances(first.T.copy(), blob_centres(4, 5, seed=21)).argmin(axis=1)
    assert sorted(nearest_blob.tolist()) == [0, 1, 2, 3, 4]
    if init == "kmeans_plus_plus":  # its centres are customers
        assert all((np.abs(points - c).max(axis=1) == 0).any() for c in first)


def blob_centres(d: int, k: int, seed: int) -> np.ndarray:
    """The centres `blobs` plants (its first draw)."""
    return np.random.default_rng(seed).normal(size=(k, d)) * 3.0


def test_fit_same_seed_is_deterministic(spark, overlapping):
    _, _, blocks = overlapping
    runs = [fit_kmeans(blocks, kmeans_plus_plus(blocks, 4, 3), 4, 0.0) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].centres, runs[1].centres)
    assert runs[0].history == runs[1].history


def test_silhouette_matches_definition_on_a_small_case():
    points = np.array([[0.0], [1.0], [5.0], [6.0], [7.0]])
    labels = np.array([0, 0, 1, 1, 1])
    # By hand: a(0)=1, b(0)=mean(5,6,7)=6 -> 5/6; a(1)=1, b(1)=5 -> 4/5; a(2)=mean(1,2)=1.5,
    # b(2)=mean(5,4)=4.5 -> 2/3; a(3)=1, b(3)=5.5 -> 9/11; a(4)=1.5, b(4)=6.5 -> 10/13.
    expected = np.mean([5 / 6, 4 / 5, 2 / 3, 9 / 11, 10 / 13])
    assert silhouette(points, labels) == pytest.approx(expected, rel=1e-12)


def test_choose_k_takes_the_best_silhouette_near_the_elbow():
    costs = {2: 1000.0, 3: 520.0, 4: 210.0, 5: 190.0, 6: 175.0, 7: 165.0}
    sil = {2: 0.50, 3: 0.55, 4: 0.62, 5: 0.60, 6: 0.70, 7: 0.40}
    curve = [CurvePoint(k, costs[k], sil[k], 10) for k in costs]
    # Elbow at k=4 (farthest below the chord); among 3, 4, 5 the silhouette prefers 4, although
    # k=6 (far past the elbow) has a higher silhouette.
    assert choose_k(curve) == 4
