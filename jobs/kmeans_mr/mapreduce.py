"""K-means as map/reduce over Spark: cached NumPy blocks, a map step per block, a reduce on the driver.

`fit_kmeans(blocks, initial_centres, max_iter, tol, prune)` is the algorithm, independent of the lake:
each iteration the map step (jobs.kmeans_mr.kernels) assigns a block's points to their nearest centre and
emits the block's partial sums, counts and cost; the driver adds the partials up in partition order and
moves the centres. It stops once no centre moved more than `tol`, or after `max_iter` iterations.

With pruning, each point's bounds must survive from one iteration to the next. RDDs are immutable, so
every iteration maps the cached blocks of the previous one to new cached blocks carrying the new bounds
(and unpersists the old ones). The partials travel back in an accumulator, keyed by partition so that
a recomputed partition cannot count twice, and the iteration is materialised by counting the new RDD on
the JVM side: a Python action would stream every cached block through a second Python worker.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import RDD, StorageLevel
from pyspark.accumulators import AccumulatorParam
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.kmeans_mr.kernels import (
    Block,
    Geometry,
    Partial,
    hamerly_step,
    lloyd_step,
    move_centres,
    nearest_two,
    own_sq_distances,
)


@dataclass(frozen=True)
class Iteration:
    number: int
    cost: float          # sum of squared distances to the centres the iteration started from
    shift: float         # largest distance a centre moved at the end of the iteration
    distances: int       # point-centre distances computed
    skipped: int         # point-centre distances pruned (plain Lloyd computes all n * k)
    reassigned: int      # points that changed centre
    empty: int           # centres that received no point (they stay where they were)


@dataclass
class Fit:
    centres: np.ndarray
    history: list[Iteration] = field(default_factory=list)
    converged: bool = False
    points: int = 0
    seconds: float = 0.0

    @property
    def iterations(self) -> int:
        return len(self.history)

    @property
    def cost(self) -> float:
        """The last iteration's cost (what Spark MLlib reports as the training cost)."""
        return self.history[-1].cost

    @property
    def distances(self) -> int:
        return sum(i.distances for i in self.history)

    @property
    def skipped(self) -> int:
        return sum(i.skipped for i in self.history)


class _ByPartition(AccumulatorParam):
    """Accumulates {partition index: results}; a repeated update of a partition replaces itself."""

    def zero(self, value: dict) -> dict:
        return {}

    def addInPlace(self, value1: dict, value2: dict) -> dict:
        value1.update(value2)
        return value1


def map_blocks(rdd: RDD, step: Callable[[Any], tuple[Any, Any]]) -> tuple[RDD, list[Any]]:
    """Cache `rdd` mapped element-wise by `step` (-> new element, result) and return the results in
    partition order, in one pass over the data."""
    results = rdd.context.accumulator({}, _ByPartition())

    def run(index: int, elements: Iterable[Any]) -> Iterator[Any]:
        out = []
        for element in elements:
            new, result = step(element)
            out.append(result)
            yield new
        results.add({index: out})

    mapped = rdd.mapPartitionsWithIndex(run, preservesPartitioning=True)
    mapped.persist(StorageLevel.MEMORY_AND_DISK)
    mapped._jrdd.count()  # noqa: SLF001 - materialise on the JVM (see the module docstring)
    return mapped, [r for index in sorted(results.value) for r in results.value[index]]


def collect_blocks(rdd: RDD, step: Callable[[Any], Any]) -> list[Any]:
    """`step` of every element, in partition order (a read-only pass)."""
    return rdd.map(step).collect()


def blocks_from_frame(frame: DataFrame, columns: list[str], key_column: str,
                      rows_per_block: int) -> RDD:
    """The rows of `frame` as cached `Block`s (feature `columns` as doubles without nulls, a long key).

    Rows cross to Python as Arrow batches (mapInArrow), not as Row objects; a partition's batches are
    then joined into blocks of at most `rows_per_block` points.
    """
    width = len(columns)
    parallelism = frame.sparkSession.sparkContext.defaultParallelism
    if frame.rdd.getNumPartitions() < parallelism:
        frame = frame.repartition(parallelism)

    def to_bytes(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            values = np.stack([batch.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                               for c in columns]) if batch.num_rows else np.empty((width, 0))
            keys = batch.column(key_column).to_numpy(zero_copy_only=False).astype(np.int64)
            yield pa.RecordBatch.from_pydict({"points": [values.tobytes()], "keys": [keys.tobytes()]})

    def to_blocks(rows: Iterable[Any]) -> Iterator[Block]:
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        filled = 0
        for row in rows:
            keys = np.frombuffer(row.keys, dtype=np.int64)
            if keys.size == 0:
                continue
            points = np.frombuffer(row.points, dtype=np.float64).reshape(width, keys.size)
            while keys.size:
                take = min(keys.size, rows_per_block - filled)
                parts.append((points[:, :take], keys[:take]))
                points, keys, filled = points[:, take:], keys[take:], filled + take
                if filled == rows_per_block:
                    yield _join(parts)
                    parts, filled = [], 0
        if parts:
            yield _join(parts)

    selected = frame.select(*[F.col(c).cast("double") for c in columns], F.col(key_column).cast("long"))
    rdd = (selected.mapInArrow(to_bytes, "points binary, keys binary")
           .rdd.mapPartitions(to_blocks, preservesPartitioning=True))
    return rdd.persist(StorageLevel.MEMORY_AND_DISK)


def _join(parts: list[tuple[np.ndarray, np.ndarray]]) -> Block:
    return Block.of(np.concatenate([p for p, _ in parts], axis=1), np.concatenate([k for _, k in parts]))


def fit_kmeans(blocks: RDD, initial_centres: np.ndarray, max_iter: int, tol: float,
               prune: bool = True) -> Fit:
    """Lloyd iterations from `initial_centres` over the cached `blocks`; see the module docstring."""
    started = time.monotonic()
    centres = np.array(initial_centres, dtype=np.float64)
    k = len(centres)
    fit = Fit(centres)
    state, previous, total_drift = blocks, None, 0.0
    try:
        for number in range(1, max_iter + 1):
            if prune:
                geometry = Geometry.of(centres, previous, total_drift)
                total_drift = geometry.total_drift
                new_state, parts = map_blocks(state, partial(hamerly_step, centres=centres,
                                                             geometry=geometry))
                if state is not blocks:
                    state.unpersist()
                state = new_state
            else:
                parts = collect_blocks(blocks, partial(lloyd_step, centres=centres))
            total = Partial.total(parts)
            fit.points = int(total.counts.sum())
            moved = move_centres(centres, total)
            shift = float(np.sqrt(own_sq_distances(moved.T, centres, np.arange(k)).max()))
            fit.history.append(Iteration(number, total.cost, shift, total.distances,
                                         fit.points * k - total.distances, total.reassigned,
                                         int((total.counts == 0).sum())))
            previous, centres = centres, moved
            if shift <= tol:
                fit.converged = True
                break
    finally:
        if state is not blocks:
            state.unpersist()
    fit.centres = centres
    fit.seconds = time.monotonic() - started
    return fit


def nearest_centres(frame: DataFrame, columns: list[str], centres: np.ndarray) -> DataFrame:
    """`frame` with `centre` (index of the nearest centre, exact, lowest index on ties) and `distance`
    (Euclidean, to that centre), computed from the feature `columns` (doubles without nulls)."""
    fields = frame.schema.fields
    names = [f.name for f in fields]

    def assign(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            points = np.stack([batch.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                               for c in columns]) if batch.num_rows else np.empty((len(columns), 0))
            sq_norms = np.einsum("ji,ji->i", points, points)
            nearest, _ = nearest_two(points, sq_norms, centres)
            distance = np.sqrt(own_sq_distances(points, centres, nearest))
            yield pa.RecordBatch.from_arrays(
                [*[batch.column(n) for n in names], pa.array(nearest, pa.int32()), pa.array(distance)],
                names=[*names, "centre", "distance"])

    schema = ", ".join([f"`{f.name}` {f.dataType.simpleString()}" for f in fields]
                       + ["centre int", "distance double"])
    return frame.mapInArrow(assign, schema)
