"""The segmentation model: what a fit produces and every nightly assignment reuses.

Stored under `<lake root>/_models/kmeans/<version>/` as `model.json` (features, transforms, scaler
statistics, segment ids and labels, seed, training summary) and `centres.npy` (the centres in
standardised units, float64, exact); `<lake root>/_models/kmeans/CURRENT` names the version in use and is
replaced only after a version is completely written. Versions are v0001, v0002, ... in fitting order.

Segment ids across retrains: a new centre keeps the id of the previous model's segment whose centre is
nearest, compared in the new model's standardised units (the old centre is taken back to original units
with the old scaler, then standardised with the new one). Pairs are matched greedily, nearest first, each
segment at most once, and only within `match_max_distance`; every other centre gets a new id after the
highest id ever used (ids are never reused for another segment). When the feature list changed, no
centre matches.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from jobs.kmeans_mr.kernels import exact_sq_distances
from jobs.kmeans_mr.scaling import Scaler

MODELS_DIR = "_models/kmeans"
CURRENT = "CURRENT"


@dataclass
class SegmentModel:
    version: str
    scaler: Scaler
    centres: np.ndarray          # (k, d) standardised units, row i = centre of segment_ids[i]
    segment_ids: list[int]
    labels: list[str]
    seed: int
    next_segment_id: int         # the smallest id never used by this model's lineage
    fitted_for: str              # business date (ISO) of the features it was fitted on
    run_id: str
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.centres)

    def description(self) -> dict[str, Any]:
        return {"version": self.version, "features": list(self.scaler.columns),
                "transforms": list(self.scaler.transforms), "means": list(self.scaler.means),
                "scales": list(self.scaler.scales), "k": self.k, "segment_ids": self.segment_ids,
                "labels": self.labels, "seed": self.seed, "next_segment_id": self.next_segment_id,
                "fitted_for": self.fitted_for, "run_id": self.run_id, "training": self.training,
                "centres": self.centres.tolist()}

    @staticmethod
    def from_description(info: dict[str, Any], centres: np.ndarray) -> SegmentModel:
        scaler = Scaler(tuple(info["features"]), tuple(info["transforms"]), tuple(info["means"]),
                        tuple(info["scales"]))
        return SegmentModel(info["version"], scaler, centres, list(info["segment_ids"]),
                            list(info["labels"]), info["seed"], info["next_segment_id"],
                            info["fitted_for"], info["run_id"], info["training"])


def match_segment_ids(centres: np.ndarray, scaler: Scaler, previous: SegmentModel | None,
                      max_distance: float) -> tuple[list[int], int]:
    """Ids for the new `centres` (see the module docstring) and the next unused id."""
    if previous is None:
        return list(range(len(centres))), len(centres)
    ids: list[int | None] = [None] * len(centres)
    if previous.scaler.columns == scaler.columns:
        old = scaler.to_standardised(previous.scaler.to_original(previous.centres))
        distances = np.sqrt(exact_sq_distances(centres.T, old))
        taken: set[int] = set()
        for flat in np.argsort(distances, axis=None, kind="stable"):
            new_i, old_i = divmod(int(flat), len(old))
            if distances[new_i, old_i] > max_distance:
                break
            if ids[new_i] is None and old_i not in taken:
                ids[new_i] = previous.segment_ids[old_i]
                taken.add(old_i)
    next_id = previous.next_segment_id
    for i, value in enumerate(ids):
        if value is None:
            ids[i], next_id = next_id, next_id + 1
    return [int(i) for i in ids], next_id


class ModelStore:
    """Versions of the model under the lake root (any filesystem pyarrow reaches)."""

    def __init__(self, lake_root: str):
        uri = lake_root if "://" in lake_root else Path(lake_root).resolve().as_uri()
        self._fs, root = pafs.FileSystem.from_uri(uri)
        self._dir = f"{root.rstrip('/')}/{MODELS_DIR}"

    def _read(self, path: str) -> bytes:
        with self._fs.open_input_stream(f"{self._dir}/{path}") as stream:
            return stream.read()

    def _write(self, path: str, data: bytes) -> None:
        with self._fs.open_output_stream(f"{self._dir}/{path}") as stream:
            stream.write(data)

    def current_version(self) -> str | None:
        try:
            return self._read(CURRENT).decode().strip() or None
        except FileNotFoundError:
            return None

    def load(self, version: str) -> SegmentModel:
        info = json.loads(self._read(f"{version}/model.json"))
        return SegmentModel.from_description(info, np.load(io.BytesIO(self._read(f"{version}/centres.npy"))))

    def current(self) -> SegmentModel | None:
        version = self.current_version()
        return None if version is None else self.load(version)

    def next_version(self) -> str:
        selector = pafs.FileSelector(self._dir, allow_not_found=True)
        numbers = [int(i.base_name[1:]) for i in self._fs.get_file_info(selector)
                   if i.type == pafs.FileType.Directory and i.base_name[1:].isdigit()]
        return f"v{max(numbers, default=0) + 1:04d}"

    def save(self, model: SegmentModel) -> None:
        """Write the version, then point CURRENT at it (a reader never sees a half-written model)."""
        self._fs.create_dir(f"{self._dir}/{model.version}", recursive=True)
        buffer = io.BytesIO()
        np.save(buffer, model.centres)
        self._write(f"{model.version}/centres.npy", buffer.getvalue())
        self._write(f"{model.version}/model.json", json.dumps(model.description(), indent=2).encode())
        self._write(f"{CURRENT}.tmp", model.version.encode())
        self._fs.move(f"{self._dir}/{CURRENT}.tmp", f"{self._dir}/{CURRENT}")
