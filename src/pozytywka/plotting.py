"""Matplotlib helpers the plots share: log axes whose tick labels never overlap."""

from __future__ import annotations

import itertools
import math

import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.textpath import TextPath


def readable_log_ticks(fig: Figure, max_ticks: int = 3, min_panel_inches: float = 0.0) -> Figure:
    """``fig`` at least ``min_panel_inches`` wide per column of axes, with at most
    ``max_ticks`` labelled ticks on each log-scaled x axis: as many as fit side by side
    within the axes (none on minor ticks), so no two labels overlap."""
    columns = len({round(ax.get_position().x0, 3) for ax in fig.axes})
    width, height = fig.get_size_inches()
    fig.set_size_inches(max(width, columns * min_panel_inches), height)
    for ax in fig.axes:
        if ax.get_xscale() == "log":
            _set_log_ticks(ax, max_ticks, fig)
    return fig


def _set_log_ticks(ax: Axes, max_ticks: int, fig: Figure) -> None:
    """The most ticks, up to ``max_ticks``, whose labels fit (at least one)."""
    low, high = ax.get_xlim()
    font = ax.xaxis.get_major_ticks(1)[0].label1.get_fontproperties()
    inches = ax.get_position().width * fig.get_figwidth()
    span = _label_span(ax, fig)
    for n in range(max_ticks, 0, -1):
        ticks = log_ticks(low, high, n)
        labels = tick_labels(ticks)
        if n == 1 or _fit(ticks, labels, (low, high), inches, span, font):
            break
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter(labels))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _label_span(ax: Axes, fig: Figure) -> tuple[float, float]:
    """Where ``ax``'s x tick labels may lie, in inches from its left edge: past its edges up
    to half the way to the next axes in its row (or to the figure's edge)."""
    box = ax.get_position()
    left, right = box.x0, 1 - box.x1
    for other in (o.get_position() for o in fig.axes if o is not ax):
        if other.y1 > box.y0 and other.y0 < box.y1:  # in the same row
            left = min(left, (box.x0 - other.x1) / 2) if other.x1 <= box.x0 else left
            right = min(right, (other.x0 - box.x1) / 2) if other.x0 >= box.x1 else right
    inches = fig.get_figwidth()
    return -left * inches, (box.width + right) * inches


def _fit(ticks, labels, limits, inches: float, span, font, gap: float = 0.08) -> bool:
    """Whether ``labels`` at ``ticks`` (log axis over ``limits``, ``inches`` wide) lie
    within ``span`` (inches from its left edge) with ``gap`` inches between neighbours."""
    low, high = limits
    boxes = []
    for tick, label in zip(ticks, labels, strict=True):
        centre = inches * math.log(tick / low) / math.log(high / low)
        half = TextPath((0, 0), label, prop=font).get_extents().width / 72 / 2 + gap / 2
        boxes.append((centre - half, centre + half))
    inside = boxes[0][0] >= span[0] and boxes[-1][1] <= span[1]
    return inside and all(a[1] <= b[0] for a, b in itertools.pairwise(boxes))


def log_ticks(low: float, high: float, max_ticks: int = 3) -> list[float]:
    """At most ``max_ticks`` round values inside [low, high] (low > 0), evenly spaced on a
    log scale and centred: powers of ten when the range holds two or more, else 1-2-5 steps,
    else values of two significant digits."""
    exponents = range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1)
    powers = [10.0**k for k in exponents if low <= 10.0**k <= high]
    steps = sorted(s * 10.0**k for k in exponents for s in (1, 2, 5) if low <= s * 10.0**k <= high)
    for candidates in (powers, steps):
        if len(candidates) >= 2:
            stride = math.ceil(len(candidates) / max_ticks)
            picked = len(candidates[::stride])
            return candidates[(len(candidates) - 1 - (picked - 1) * stride) // 2 :: stride]
    inner = np.geomspace(low, high, max_ticks + 2)[1:-1]
    return sorted({float(f"{v:.2g}") for v in inner})


def tick_labels(values: list[float]) -> list[str]:
    """Short labels: plain numbers if all lie in [0.01, 10,000), else 10^k if all are powers
    of ten, else 1e-06 style."""
    if all(1e-2 <= v < 1e4 for v in values):
        return [f"{v:g}" for v in values]
    exponents = [math.log10(v) for v in values]
    if all(math.isclose(e, round(e)) for e in exponents):
        return [f"$\\mathdefault{{10^{{{round(e)}}}}}$" for e in exponents]
    return [f"{v:.2g}" for v in values]
