"""Charts for the run report: matplotlib (Agg) rendered to PNG and embedded as data URIs (opens offline)."""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PALETTE = ["#1f4e79", "#2e86c1", "#48c9b0", "#f4d03f", "#e67e22", "#c0392b", "#8e44ad", "#7f8c8d"]


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=96)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str = "",
              horizontal: bool = False) -> str:
    figure, axes = plt.subplots(figsize=(7, 3.2))
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(labels))]
    if horizontal:
        axes.barh(list(labels), list(values), color=colours)
        axes.invert_yaxis()
    else:
        axes.bar(list(labels), list(values), color=colours)
        axes.tick_params(axis="x", labelrotation=30)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    return _png(figure)


def grouped_bar_chart(groups: Sequence[str], series: dict[str, Sequence[float]], title: str) -> str:
    figure, axes = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        axes.bar([g + i * width for g in range(len(groups))], list(values), width, label=name,
                 color=PALETTE[i % len(PALETTE)])
    axes.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], list(groups), rotation=30)
    axes.set_title(title)
    axes.legend(fontsize=8)
    return _png(figure)


def histogram(bin_edges: Sequence[float], counts: Sequence[int], title: str, xlabel: str) -> str:
    figure, axes = plt.subplots(figsize=(7, 3.2))
    widths = [b - a for a, b in zip(bin_edges[:-1], bin_edges[1:], strict=False)]
    axes.bar(list(bin_edges[:-1]), list(counts), width=widths, align="edge", color=PALETTE[1],
             edgecolor="white")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("customers")
    return _png(figure)


def line_chart(x: Sequence[float], series: dict[str, Sequence[float]], title: str, xlabel: str,
               ylabel: str) -> str:
    figure, axes = plt.subplots(figsize=(7, 3.2))
    for i, (name, values) in enumerate(series.items()):
        axes.plot(list(x), list(values), marker="o", label=name, color=PALETTE[i % len(PALETTE)])
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=8)
    return _png(figure)


def heat_map(row_labels: Sequence[str], column_labels: Sequence[str], values: Sequence[Sequence[float]],
             title: str) -> str:
    figure, axes = plt.subplots(figsize=(max(6, 0.45 * len(column_labels) + 2), 0.5 * len(row_labels) + 1.8))
    image = axes.imshow(values, cmap="RdBu_r", vmin=-2.5, vmax=2.5, aspect="auto")
    axes.set_xticks(range(len(column_labels)), list(column_labels), rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(row_labels)), list(row_labels), fontsize=8)
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="z-score")
    return _png(figure)
