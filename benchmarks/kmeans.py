"""K-means speed: our map/reduce K-means, with and without Hamerly pruning, against Spark MLlib.

In one Spark session, on the same standardised data (generated: 32 Gaussian clusters of different
spreads in d = 16 dimensions, standardised by jobs.kmeans_mr.scaling), from the same initial centres
(our seeded k-means||) and for the same number of iterations (ours runs with tol 0 until no centre moves
or --max-iter; the others get exactly that many iterations, MLlib with epsilon 0):

  ours-pruned   jobs.kmeans_mr.mapreduce.fit_kmeans(prune=True)
  ours-plain    the same without pruning (every point against every centre)
  mllib         pyspark.mllib KMeans (trainKMeansModel, the function KMeans.train calls, with initialModel)

Times: `prep` turns the cached DataFrame into each method's cached input (ours: NumPy blocks through
Arrow, counted as the job counts its customers, which also leaves the decoded blocks in the Python
workers; MLlib: the rows as JVM vectors, the conversion KMeans.train does first), `iterate` runs the
iterations on it, `total` = both. Ratios are ours / MLlib: `iter×` compares only the iterations,
`total×` prep + iterations. MLlib prunes with its own norm and centre bounds but does not count them, so
its distance column is the n·k·iterations it would compute without them.

--scaling adds rows for local[1], local[2] and local-cluster[2,1,2048] (two executors of one core), each
in its own process: the pruned fit and MLlib at n = --scaling-n, k = 32.

    .venv/bin/python benchmarks/kmeans.py                                # n = 100k and 1M, k = 8 and 32
    .venv/bin/python benchmarks/kmeans.py --n 20000 --k 8 --scaling --scaling-n 20000   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.mllib.common import _java2py, _py2java, callMLlibFunc
from pyspark.mllib.linalg import _convert_to_vector
from pyspark.sql import DataFrame, SparkSession

from jobs.common.config import load_settings
from jobs.common.spark import get_spark
from jobs.kmeans_mr.init import kmeans_parallel
from jobs.kmeans_mr.mapreduce import blocks_from_frame, count_points, fit_kmeans
from jobs.kmeans_mr.scaling import POINT_KEY, Scaler
from jobs.kmeans_mr.settings import Feature

CLUSTERS = 32
SCALING_MASTERS = ["local[1]", "local[2]", "local-cluster[2,1,2048]"]


def session(master: str) -> SparkSession:
    """The pipeline's session (conf/pipeline.yaml's Spark settings) on `master`."""
    settings = load_settings(env={**os.environ, "CRM_SPARK__MASTER": master})
    return get_spark(settings, app_name="kmeans-benchmark",
                     extra_conf={"spark.driver.memory": "8g", "spark.executor.memory": "2g"})


def generated(spark: SparkSession, n: int, d: int, seed: int, partitions: int) -> DataFrame:
    """n points around CLUSTERS centres (spreads 0.3 .. 1.2), drawn per partition from (seed, part)."""
    names = [f"f{j}" for j in range(d)]

    def draw(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        centres = np.random.default_rng(seed).normal(size=(CLUSTERS, d)) * 2.0
        spreads = np.random.default_rng(seed + 1).uniform(0.3, 1.2, CLUSTERS)
        for batch in batches:
            for part in batch.column("id").to_pylist():
                size = n // partitions + (part < n % partitions)
                first = part * (n // partitions) + min(part, n % partitions)
                rng = np.random.default_rng([seed, part])
                label = rng.integers(0, CLUSTERS, size)
                values = centres[label] + rng.normal(size=(size, d)) * spreads[label, None]
                yield pa.RecordBatch.from_arrays(
                    [pa.array(np.arange(first, first + size)), *[pa.array(values[:, j]) for j in range(d)]],
                    names=["id", *names])

    schema = "id long, " + ", ".join(f"{c} double" for c in names)
    return spark.range(partitions, numPartitions=partitions).mapInArrow(draw, schema)


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def mllib_vectors(points: DataFrame, columns: list[str]):
    """The points as a cached JVM RDD of MLlib vectors (what KMeans.train converts its input into)."""
    sc = points.sparkSession.sparkContext
    java_rdd = _py2java(sc, points.select(*columns).rdd.map(lambda row: _convert_to_vector(list(row))))
    java_rdd.persist(sc._jvm.org.apache.spark.storage.StorageLevel.MEMORY_AND_DISK())  # noqa: SLF001
    java_rdd.count()
    return java_rdd


def run_mllib(points: DataFrame, vectors, centres: np.ndarray, iterations: int) -> dict:
    sc = points.sparkSession.sparkContext
    model, seconds = timed(lambda: callMLlibFunc(
        "trainKMeansModel", vectors, len(centres), iterations, "random", None, 2, 0.0,
        [_convert_to_vector(c) for c in centres], "euclidean"))
    found = np.array([c.toArray() for c in _java2py(sc, model.clusterCenters())])
    return {"iterations": model.numIter(), "iterate": seconds, "cost": model.trainingCost(),
            "centres": found}


def measure(spark: SparkSession, n: int, d: int, ks: list[int], seed: int, partitions: int,
            max_iter: int, methods: list[str]) -> list[dict]:
    columns = [f"f{j}" for j in range(d)]
    raw = generated(spark, n, d, seed, partitions)
    scaler, _ = Scaler.fit(raw, [Feature(column=c, transform="none") for c in columns])
    points = scaler.standardise(raw, id_column="id").persist(StorageLevel.MEMORY_AND_DISK)
    points.count()
    blocks, ours_prep = timed(lambda: _materialised(blocks_from_frame(points, columns, POINT_KEY, 262144)))
    vectors, mllib_prep = (timed(lambda: mllib_vectors(points, columns)) if "mllib" in methods
                           else (None, 0.0))
    rows = []
    for k in ks:
        start, init_seconds = timed(lambda k=k: kmeans_parallel(blocks, k, seed, 5, 2.0, 10))
        pruned = fit_kmeans(blocks, start, max_iter, 0.0, prune=True)
        results = {"ours-pruned": _ours(pruned, ours_prep)}
        if "ours-plain" in methods:
            results["ours-plain"] = _ours(fit_kmeans(blocks, start, pruned.iterations, 0.0, prune=False),
                                          ours_prep)
        if "mllib" in methods:
            if vectors.getStorageLevel().useMemory() is False:
                vectors = mllib_vectors(points, columns)
            mllib = run_mllib(points, vectors, start, pruned.iterations)
            mllib.update(prep=mllib_prep, total=mllib_prep + mllib["iterate"],
                         distances=n * k * mllib["iterations"], skipped=0)
            results["mllib"] = mllib
        for method, result in results.items():
            row = {"n": n, "k": k, "method": method, "init": init_seconds,
                   **{key: v for key, v in result.items() if key != "centres"}}
            if "mllib" in results:
                peer = results["mllib"]
                row["iter_ratio"] = result["iterate"] / peer["iterate"]
                row["total_ratio"] = result["total"] / peer["total"]
                row["cost_rel_diff"] = abs(result["cost"] - peer["cost"]) / peer["cost"]
                row["centre_max_diff"] = float(np.abs(result["centres"] - peer["centres"]).max())
            rows.append(row)
    blocks.unpersist()
    points.unpersist()
    return rows


def _materialised(blocks):
    count_points(blocks)  # fills the cache, as the job does when it counts the customers
    return blocks


def _ours(fit, prep: float) -> dict:
    return {"iterations": fit.iterations, "prep": prep, "iterate": fit.seconds, "total": prep + fit.seconds,
            "cost": fit.cost, "distances": fit.distances, "skipped": fit.skipped, "centres": fit.centres}


def print_table(rows: list[dict]) -> None:
    header = (f"{'n':>9} {'k':>3} {'method':<12} {'iters':>5} {'prep s':>8} {'iterate s':>9} {'total s':>8} "
              f"{'cost':>16} {'distances':>14} {'skipped':>8} {'iter×':>6} {'total×':>6} {'cost diff':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        share = r["skipped"] / max(r["skipped"] + r["distances"], 1)
        ratio = (f"{r['iter_ratio']:6.2f} {r['total_ratio']:6.2f} {r['cost_rel_diff']:9.1e}"
                 if "iter_ratio" in r else f"{'-':>6} {'-':>6} {'-':>9}")
        print(f"{r['n']:>9,} {r['k']:>3} {r['method']:<12} {r['iterations']:>5} {r['prep']:>8.2f} "
              f"{r['iterate']:>9.2f} {r['total']:>8.2f} {r['cost']:>16.6f} {r['distances']:>14,} "
              f"{share:>8.1%} {ratio}")


def scaling(args: argparse.Namespace) -> None:
    print(f"\nscaling: n = {args.scaling_n:,}, k = 32, d = {args.d}, ours-pruned vs mllib (iterate seconds)")
    print(f"{'master':<26} {'iters':>5} {'ours s':>8} {'mllib s':>8} {'iter×':>6} {'ours speed-up':>14}")
    base = None
    for master in SCALING_MASTERS:
        command = [sys.executable, __file__, "--master", master, "--n", str(args.scaling_n), "--k", "32",
                   "--d", str(args.d), "--max-iter", str(args.max_iter), "--partitions", str(args.partitions),
                   "--methods", "mllib", "--json"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"{master:<26} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        rows = {r["method"]: r for r in map(json.loads, lines)}
        ours, mllib = rows["ours-pruned"], rows["mllib"]
        base = base or ours["iterate"]
        print(f"{master:<26} {ours['iterations']:>5} {ours['iterate']:>8.2f} {mllib['iterate']:>8.2f} "
              f"{ours['iter_ratio']:>6.2f} {base / ours['iterate']:>13.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--k", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--methods", nargs="+", default=["ours-plain", "mllib"],
                        help="besides ours-pruned: ours-plain and/or mllib")
    parser.add_argument("--scaling", action="store_true", help="add the executor-core scaling rows")
    parser.add_argument("--scaling-n", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="print rows as JSON lines (for --scaling)")
    args = parser.parse_args()

    spark = session(args.master)
    rows = [row for n in args.n
            for row in measure(spark, n, args.d, args.k, args.seed, args.partitions, args.max_iter,
                               args.methods)]
    spark.stop()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"\nK-means, d = {args.d}, {args.partitions} partitions, master {args.master}, "
          f"same initial centres and iterations per (n, k)")
    print_table(rows)
    if args.scaling:
        scaling(args)


if __name__ == "__main__":
    main()
