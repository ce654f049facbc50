"""The NumPy kernels of the map step: exact distances, nearest centres, Hamerly's bounds, partial sums.

No Spark here. A block holds its points column-wise (`columns[j]` = feature j of every point, contiguous),
so the per-feature sums of the reduce step are fast `bincount`s.

Exactness. The *exact* squared distance of a point to a centre is defined as sum over j = 0..d-1, in that
order, of (x_j - c_j)^2. Every assignment is the lowest-index centre with the smallest exact distance,
which is what a plain NumPy Lloyd iteration computes. Two shortcuts never change that result:

* Screening: distances are first estimated with one matrix product (|x|^2 + |c|^2 - 2 x.c). A rigorous
  bound on its rounding error (`_SLACK_ULPS`) tells when the estimate's winner is certain; when another
  centre is within that bound, the exact distances decide.
* Pruning (Hamerly 2010): per point an upper bound u on the distance to its own centre and a lower bound
  l on the distance to every other centre; half the distance s from each centre to its nearest other
  centre. If u < max(l, s) the centre cannot change, and no other distance is computed. Here u is the
  exact distance (it is needed for the cost anyway), l shrinks by the largest drift of another centre
  each iteration, and the test keeps a relative margin far above the rounding of the bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# |estimate - exact| <= (8 d + 32) * 2^-53 * (|x|^2 + |c|^2): the dot product and norms (d terms each),
# the two additions, and the exact form's own rounding, each bounded by (d + 3) unit roundoffs, doubled.
_SLACK_ULPS = 2.0 ** -53
# A point is pruned only if u < (1 - margin) * max(l, s) - margin * (drift so far): the bounds' rounding
# is below 1e-13 relative for any sane number of iterations, so pruning cannot flip a near tie.
PRUNE_MARGIN = 1e-9
# Points handled at once: keeps the temporaries of the kernels in the CPU caches. `nearest_two` takes
# _CELLS // k points at a time, so that its (k x points) estimates stay the same size whatever k.
_CHUNK = 16384
_CELLS = 2 ** 18


@dataclass
class Partial:
    """What the map step emits per block and the reduce step adds up."""

    counts: np.ndarray   # (k,) points assigned to each centre
    sums: np.ndarray     # (k, d) sum of those points
    cost: float          # sum of exact squared distances to the assigned centre
    distances: int       # point-centre distances computed
    reassigned: int      # points whose centre changed in this iteration

    @staticmethod
    def total(parts: list[Partial]) -> Partial:
        """Sum in the given order (partition order), so a fit is bitwise reproducible."""
        return Partial(np.sum([p.counts for p in parts], axis=0), np.sum([p.sums for p in parts], axis=0),
                       float(np.sum([p.cost for p in parts])), int(sum(p.distances for p in parts)),
                       int(sum(p.reassigned for p in parts)))


@dataclass
class Block:
    """A chunk of points: read by every pass, never changed."""

    columns: np.ndarray   # (d, m) standardised features
    sq_norms: np.ndarray  # (m,) |x|^2
    keys: np.ndarray      # (m,) uint64 stable key per point (seeds the samplers)

    @property
    def size(self) -> int:
        return self.columns.shape[1]

    @staticmethod
    def of(columns: np.ndarray, keys: np.ndarray) -> Block:
        columns = np.ascontiguousarray(columns, dtype=np.float64)
        return Block(columns, np.einsum("ji,ji->i", columns, columns), keys.astype(np.uint64))


@dataclass
class Bounds:
    """A block's per-point state between pruned iterations (12 bytes a point)."""

    assignment: np.ndarray  # (m,) int32 centre of each point
    lower: np.ndarray       # (m,) lower bound on the distance to any other centre


@dataclass(frozen=True)
class Geometry:
    """Driver-side facts about the centres of an iteration that the pruning test needs."""

    half_gaps: np.ndarray   # (k,) half the distance from each centre to its nearest other centre
    drift: np.ndarray       # (k,) how far each centre moved since the previous iteration
    total_drift: float      # sum over iterations of the largest drift (scale of the bounds' rounding)

    @staticmethod
    def of(centres: np.ndarray, previous: np.ndarray | None, total_drift: float) -> Geometry:
        gaps = exact_sq_distances(centres.T, centres)
        np.fill_diagonal(gaps, np.inf)
        drift = (np.zeros(len(centres)) if previous is None
                 else np.sqrt(own_sq_distances(centres.T, previous, np.arange(len(centres)))))
        return Geometry(0.5 * np.sqrt(gaps.min(axis=1)), drift, total_drift + float(drift.max()))


def exact_sq_distances(columns: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(m, k) exact squared distances of the points in `columns` (d, m) to every centre (k, d)."""
    m, k = columns.shape[1], len(centres)
    out = np.empty((m, k))
    for start in range(0, m, _CHUNK):
        acc = out[start:start + _CHUNK]
        acc.fill(0.0)
        for j in range(columns.shape[0]):
            diff = np.subtract.outer(columns[j, start:start + _CHUNK], centres[:, j])
            diff *= diff
            acc += diff
    return out


def own_sq_distances(columns: np.ndarray, centres: np.ndarray, assignment: np.ndarray) -> np.ndarray:
    """(m,) exact squared distance of each point to its assigned centre (bitwise as above)."""
    m = columns.shape[1]
    index = assignment.astype(np.intp, copy=False)  # take() would convert them on every call
    centre_columns = np.ascontiguousarray(centres.T)
    out = np.zeros(m)
    buffer = np.empty(min(m, _CHUNK))
    for start in range(0, m, _CHUNK):
        stop = min(start + _CHUNK, m)
        acc, diff, rows = out[start:stop], buffer[:stop - start], index[start:stop]
        for j, centre_column in enumerate(centre_columns):
            # The indices are valid; mode="clip" skips the slow per-index check of the default mode.
            centre_column.take(rows, out=diff, mode="clip")
            np.subtract(columns[j, start:stop], diff, out=diff)
            diff *= diff
            acc += diff
    return out


def nearest_two(columns: np.ndarray, sq_norms: np.ndarray,
                centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's nearest centre (exact, lowest index on ties) and a lower bound on its distance to
    every other centre.

    Screening: one matrix product with the centres scaled by -2 (exact) gives g = |c|^2 - 2 x.c. The
    estimate is g + |x|^2; as |x|^2 is the same for all centres of a point, it is only added to the
    point's two smallest g. Every estimate of a point is within slack = (8 d + 32) 2^-53 (|x|^2 +
    max |c|^2) of the exact distance (`_SLACK_ULPS`, with the largest centre norm), and rounding is
    monotonic, so no other centre's estimate is below the runner-up's. Hence if runner-up - slack >
    winner + slack (also as rounded: rounding cannot turn a <= into a >), the winner is the unique
    exact nearest and runner-up - slack bounds every other exact distance. Otherwise (contested) the
    exact distances decide, and their second smallest is the bound.
    """
    m, k = columns.shape[1], len(centres)
    scaled = -2.0 * centres
    centre_sq_norms = np.einsum("ij,ij->i", centres, centres)
    slack_factor = (8 * columns.shape[0] + 32) * _SLACK_ULPS
    widest = centre_sq_norms.max()
    nearest = np.empty(m, dtype=np.int32)
    lower_sq = np.empty(m)
    chunk = max(1, _CELLS // k)
    buffer = np.empty(k * min(m, chunk))
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        cols, point_sq_norms = columns[:, start:stop], sq_norms[start:stop]
        # (k, points): the reductions over the centres then run along long rows.
        estimate = np.matmul(scaled, cols, out=buffer[:k * (stop - start)].reshape(k, -1))
        estimate += centre_sq_norms[:, None]
        best, first, second = _two_smallest(estimate)
        slack = slack_factor * (point_sq_norms + widest)
        bound = np.subtract(second + point_sq_norms, slack, out=lower_sq[start:stop])
        contested = np.flatnonzero(bound <= (first + point_sq_norms) + slack)
        if contested.size:
            best[contested], _, bound[contested] = _two_smallest(
                exact_sq_distances(cols[:, contested], centres).T)
        nearest[start:stop] = best
    return nearest, np.sqrt(np.maximum(lower_sq, 0.0, out=lower_sq), out=lower_sq)


def _two_smallest(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of `values` (k, points), which it overwrites: the index of the smallest entry (lowest
    on ties), that entry, and the smallest of the others. Along axis 0, NumPy's reductions are long
    vector operations; a row-wise argmin of a (rows, k) array would pay a call per point."""
    first = np.minimum.reduce(values, axis=0)
    # The lowest index of the smallest entry is the number of leading entries above it.
    leading = np.greater(values, first)
    for j in range(1, len(values)):
        np.logical_and(leading[j], leading[j - 1], out=leading[j])
    best = np.add.reduce(leading, axis=0, dtype=np.min_scalar_type(len(values)))
    values[best, np.arange(values.shape[1])] = np.inf
    return best, first, np.minimum.reduce(values, axis=0)


def partial_sums(block: Block, assignment: np.ndarray, own: np.ndarray, k: int, distances: int,
                 reassigned: int) -> Partial:
    index = assignment.astype(np.intp, copy=False)  # bincount() would convert it on every call
    sums = np.empty((k, block.columns.shape[0]))
    for j, column in enumerate(block.columns):
        sums[:, j] = np.bincount(index, weights=column, minlength=k)
    return Partial(np.bincount(index, minlength=k), sums, float(own.sum()), distances, reassigned)


def lloyd_step(block: Block, centres: np.ndarray) -> Partial:
    """One plain Lloyd map step: every point against every centre."""
    assignment, _ = nearest_two(block.columns, block.sq_norms, centres)
    own = own_sq_distances(block.columns, centres, assignment)
    return partial_sums(block, assignment, own, len(centres), block.size * len(centres), 0)


def hamerly_step(block: Block, bounds: Bounds | None, centres: np.ndarray,
                 geometry: Geometry) -> tuple[Bounds, Partial]:
    """One pruned map step from the block's bounds (None before the first); returns the new bounds and
    the block's partial."""
    k, m = len(centres), block.size
    if bounds is None:
        assignment, lower = nearest_two(block.columns, block.sq_norms, centres)
        own = own_sq_distances(block.columns, centres, assignment)
        return Bounds(assignment, lower), partial_sums(block, assignment, own, k, m * k, m)

    assignment = bounds.assignment.copy()
    own = own_sq_distances(block.columns, centres, assignment)
    fastest = int(geometry.drift.argmax())
    runner_up = np.partition(geometry.drift, -2)[-2] if k > 1 else 0.0
    lower = bounds.lower - np.where(assignment == fastest, runner_up, geometry.drift[fastest])
    threshold = np.maximum(geometry.half_gaps.take(assignment, mode="clip"), lower)
    threshold *= 1.0 - PRUNE_MARGIN
    threshold -= PRUNE_MARGIN * geometry.total_drift
    open_ = np.flatnonzero(np.sqrt(own) >= threshold)
    reassigned = 0
    if open_.size:
        cols = block.columns.take(open_, axis=1, mode="clip")  # valid indices, as in own_sq_distances
        nearest, lower[open_] = nearest_two(cols, block.sq_norms[open_], centres)
        moved = np.flatnonzero(nearest != assignment[open_])
        reassigned = moved.size
        if reassigned:
            assignment[open_[moved]] = nearest[moved]
            own[open_[moved]] = own_sq_distances(cols.take(moved, axis=1, mode="clip"), centres,
                                                 nearest[moved])
    # Every point's own distance was computed; open points also every other one.
    distances = m + open_.size * (k - 1)
    return Bounds(assignment, lower), partial_sums(block, assignment, own, k, distances, reassigned)


def move_centres(centres: np.ndarray, total: Partial) -> np.ndarray:
    """New centres: the mean of each cluster; a centre that received no point stays where it was."""
    filled = total.counts > 0
    moved = centres.copy()
    moved[filled] = total.sums[filled] / total.counts[filled, None]
    return moved


def splitmix64(keys: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """(m,) uniforms in (0, 1), a fixed function of (key, seed, stream): samples that do not depend on
    how the points are partitioned or ordered."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15 + stream * 0xD1B54A32D192ED03)
                                               & 0xFFFFFFFFFFFFFFFF)
        for _ in range(2):
            z = z + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53
