"""K-means as map/reduce over Spark: cached NumPy blocks, a map step per block, a reduce on the driver.

`fit_kmeans(points, initial_centres, max_iter, tol, prune)` is the algorithm, independent of the lake:
each iteration the map step (jobs.kmeans_mr.kernels) assigns a block's points to their nearest centre and
emits the block's partial sums, counts and cost; the driver adds the partials up in partition order and
moves the centres. It stops once no centre moved more than `tol`, or after `max_iter` iterations.

Layout. `points` (from `blocks_from_frame`) is an RDD with exactly one element per partition, the list of
the partition's blocks, cached once in the JVM as pickled bytes. Every pass reads them as raw frames and
takes the decoded blocks from its Python worker process, which keeps them between tasks (PySpark reuses
workers); only a worker that has not seen the partition yet decodes the frames. A worker must read its
whole input to be reused, so the frames still cross the socket, but nothing is unpickled again.
Correctness does not depend on the worker: the cached RDD is the source, the process cache a copy.

A pass that carries per-point state from one iteration to the next (Hamerly's bounds, the initialisers'
distances) keeps it in a second cached RDD of the same shape: each pass maps the pair (points, state),
zipped on the JVM, to a new cached state RDD and unpersists the old one, so only the small state is
pickled and cached again. The partials travel back in an accumulator keyed by partition (a recomputed
partition replaces, never adds), and the new state is materialised by counting it on the JVM side: a
Python action would stream it through a second Python worker.
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
from pyspark.serializers import BatchedSerializer, NoOpSerializer, PairDeserializer
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


# Decoded blocks of the partitions this Python worker process has read, of one points RDD at a time:
# {(application id, RDD id, partition index): blocks}.
_resident: dict[tuple[str, int, int], list[Block]] = {}


@dataclass(frozen=True)
class _Source:
    """Where a task finds its partition's blocks (see the module docstring)."""

    key: tuple[str, int]     # (application id, RDD id) of the cached points
    frames: BatchedSerializer  # how the points RDD pickled its elements

    @staticmethod
    def of(points: RDD) -> _Source:
        if not isinstance(points._jrdd_deserializer, BatchedSerializer):  # noqa: SLF001
            raise TypeError("points must come from blocks_from_frame")
        return _Source((points.context.applicationId, points.id()),
                       points._jrdd_deserializer)  # noqa: SLF001

    def blocks(self, index: int, frames: list[bytes]) -> list[Block]:
        key = (*self.key, index)
        if key not in _resident:
            for other in [k for k in _resident if k[:2] != self.key]:
                del _resident[other]  # one points RDD per worker bounds the memory
            _resident[key] = [block for frame in frames for blocks in self.frames.serializer.loads(frame)
                              for block in blocks]
        return _resident[key]


def _input(points: RDD, state: RDD | None) -> RDD:
    """The cached points as undecoded frames (bytes), zipped on the JVM with their states if any: one
    element each per partition, so the zip pairs each partition's blocks with their states."""
    if state is None:
        return RDD(points._jrdd, points.context, NoOpSerializer())  # noqa: SLF001
    pairs = points._jrdd.zip(state._jrdd)  # noqa: SLF001
    return RDD(pairs, points.context, PairDeserializer(NoOpSerializer(),
                                                       state._jrdd_deserializer))  # noqa: SLF001


def _with_states(source: _Source, index: int, elements: Iterable[Any],
                 stateful: bool) -> Iterator[tuple[Block, Any]]:
    """The partition's blocks, each with its state (None when there is no state RDD yet)."""
    elements = list(elements)  # the whole input is read, whether or not the blocks are resident
    if not stateful:
        return ((block, None) for block in source.blocks(index, elements))
    blocks = source.blocks(index, [frame for frame, _ in elements])
    return zip(blocks, [st for _, states in elements for st in states], strict=True)


def map_state(points: RDD, state: RDD | None,
              step: Callable[[Block, Any], tuple[Any, Any]]) -> tuple[RDD, list[Any]]:
    """Apply `step(block, its state or None) -> (new state, result)` to every block in one pass; return
    the cached new state RDD and the results in partition order."""
    results = points.context.accumulator({}, _ByPartition())
    source, stateful = _Source.of(points), state is not None  # the closure must not hold RDDs

    def run(index: int, elements: Iterable[Any]) -> Iterator[list[Any]]:
        out = [step(block, before) for block, before in _with_states(source, index, elements, stateful)]
        results.add({index: [result for _, result in out]})
        yield [after for after, _ in out]

    mapped = _input(points, state).mapPartitionsWithIndex(run, preservesPartitioning=True)
    mapped.persist(StorageLevel.MEMORY_AND_DISK)
    mapped._jrdd.count()  # noqa: SLF001 - materialise on the JVM (see the module docstring)
    return mapped, [r for index in sorted(results.value) for r in results.value[index]]


def collect_blocks(points: RDD, step: Callable[..., Any], state: RDD | None = None) -> list[Any]:
    """`step(block)` (or `step(block, its state)`) of every block, in partition order (read-only)."""
    source, stateful = _Source.of(points), state is not None

    def run(index: int, elements: Iterable[Any]) -> list[Any]:
        return [step(block, st) if stateful else step(block)
                for block, st in _with_states(source, index, elements, stateful)]

    return _input(points, state).mapPartitionsWithIndex(run).collect()


def count_points(points: RDD) -> int:
    """Points in the cached blocks; the first pass fills the JVM cache and the workers' decoded copies."""
    return int(sum(collect_blocks(points, _size)))


def _size(block: Block) -> int:
    return block.size


def blocks_from_frame(frame: DataFrame, columns: list[str], key_column: str,
                      rows_per_block: int) -> RDD:
    """The rows of `frame` as cached `Block`s (feature `columns` as doubles without nulls, a long key),
    one list of blocks per partition (see the module docstring).

    Rows leave the JVM as Arrow record batches made by Spark's own converter (`toArrowBatchRdd`, what
    `toPandas` uses; internal to Spark SQL but public to the JVM), never as Row objects nor through a
    Python pass and back; a partition's batches are then joined into blocks of at most
    `rows_per_block` points.
    """
    parallelism = frame.sparkSession.sparkContext.defaultParallelism
    if frame.rdd.getNumPartitions() < parallelism:
        frame = frame.repartition(parallelism)
    selected = frame.select(*[F.col(c).cast("double") for c in columns], F.col(key_column).cast("long"))
    schema = pa.schema([*[pa.field(c, pa.float64()) for c in columns], pa.field(key_column, pa.int64())])
    width = len(columns)

    def to_blocks(messages: Iterable[bytes]) -> Iterator[list[Block]]:
        blocks: list[Block] = []
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        filled = 0
        for message in messages:
            batch = pa.ipc.read_record_batch(pa.py_buffer(message), schema)
            if batch.num_rows == 0:
                continue
            points = np.stack([batch.column(j).to_numpy(zero_copy_only=False) for j in range(width)])
            keys = batch.column(width).to_numpy(zero_copy_only=False)
            while keys.size:
                take = min(keys.size, rows_per_block - filled)
                parts.append((points[:, :take], keys[:take]))
                points, keys, filled = points[:, take:], keys[take:], filled + take
                if filled == rows_per_block:
                    blocks.append(_join(parts))
                    parts, filled = [], 0
        if parts:
            blocks.append(_join(parts))
        yield blocks

    messages = RDD(selected._jdf.toArrowBatchRdd().toJavaRDD(),  # noqa: SLF001
                   frame.sparkSession.sparkContext, NoOpSerializer())
    return messages.mapPartitions(to_blocks, preservesPartitioning=True).persist(StorageLevel.MEMORY_AND_DISK)


def _join(parts: list[tuple[np.ndarray, np.ndarray]]) -> Block:
    return Block.of(np.concatenate([p for p, _ in parts], axis=1), np.concatenate([k for _, k in parts]))


def fit_kmeans(points: RDD, initial_centres: np.ndarray, max_iter: int, tol: float,
               prune: bool = True) -> Fit:
    """Lloyd iterations from `initial_centres` over the cached `points`; see the module docstring."""
    started = time.monotonic()
    centres = np.array(initial_centres, dtype=np.float64)
    k = len(centres)
    fit = Fit(centres)
    bounds, previous, total_drift = None, None, 0.0
    try:
        for number in range(1, max_iter + 1):
            if prune:
                geometry = Geometry.of(centres, previous, total_drift)
                total_drift = geometry.total_drift
                new_bounds, parts = map_state(points, bounds, partial(hamerly_step, centres=centres,
                                                                      geometry=geometry))
                if bounds is not None:
                    bounds.unpersist()
                bounds = new_bounds
            else:
                parts = collect_blocks(points, partial(lloyd_step, centres=centres))
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
        if bounds is not None:
            bounds.unpersist()
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
