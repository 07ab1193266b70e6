"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: the report never switches the process-wide backend or leaks figures, so it is safe to
call from a training process or a test session. Each function returns PNG bytes.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

DPI = 110
PIPELINE_COLOR = "#1f77b4"
BASELINE_COLOR = "#d62728"
FONT: dict[str, Any] = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


F = TypeVar("F", bound=Callable[..., Any])


def _styled(fn: F) -> F:
    """Draw under the report's font sizes without touching the caller's rcParams."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(FONT):  # type: ignore[arg-type]
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class StagePoint:
    """One model on a trade-off plot. Values may be None (not measured): the point is then left out."""

    name: str
    baseline: bool
    params: float | None
    clean_pct: float | None
    robust_pct: float | None
    time_s: float | None  # training time to reach this model (cumulative along the pipeline)
    energy_j: float | None  # likewise


def _time_unit(values: Sequence[float]) -> tuple[float, str]:
    top = max(values, default=0.0)
    return (3600.0, "h") if top > 3 * 3600 else (60.0, "min") if top > 180 else (1.0, "s")


def _energy_unit(values: Sequence[float]) -> tuple[float, str]:
    top = max(values, default=0.0)
    return (3.6e6, "kWh") if top > 3.6e6 else (1e3, "kJ") if top > 1e4 else (1.0, "J")


def _si(value: float, _pos: object = None) -> str:
    """Tick label for counts: 250k, 1.3M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _place_labels(ax, items: Sequence[tuple[str, float, float, bool]], min_gap_px: float = 13.0) -> None:
    """Annotate points without overlaps: pipeline names right of their point, baselines left, and
    names that would collide pushed apart vertically. Call after the figure has been drawn once,
    so limits and scales (data -> pixel) are final."""
    to_px = ax.transData.transform
    for left in (False, True):
        side = [(name, x, y, to_px((x, y))) for name, x, y, is_base in items if is_base == left]
        side.sort(key=lambda it: it[3][1])
        placed: list[tuple[float, float]] = []  # (px x, px y) of labels so far
        for name, x, y, (px, py) in side:
            ly = py + 6
            for qx, qy in placed:
                if abs(qx - px) < 90 and ly - qy < min_gap_px:
                    ly = qy + min_gap_px
            placed.append((px, ly))
            dy_pt = (ly - py) * 72.0 / ax.figure.dpi
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(-7 if left else 7, dy_pt),
                        ha="right" if left else "left", va="center", fontsize=8.5,
                        color=BASELINE_COLOR if left else "0.15")


def _scatter_panel(ax, points: Sequence[StagePoint], x_of, y_of, xlabel: str, ylabel: str, log_x: bool) -> list:
    """Pipeline stages joined in order (their trajectory), baselines as separate squares.
    Returns the labels to place once the whole figure is laid out."""
    shown = [(p, x_of(p), y_of(p)) for p in points]
    shown = [(p, x, y) for p, x, y in shown if x is not None and y is not None]
    if not shown:
        ax.text(0.5, 0.5, "not recorded for any model", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
    pipe = [(p, x, y) for p, x, y in shown if not p.baseline]
    base = [(p, x, y) for p, x, y in shown if p.baseline]
    if pipe:
        ax.plot([x for _, x, _ in pipe], [y for _, _, y in pipe], "-o", color=PIPELINE_COLOR, ms=7, lw=1.5,
                label="pipeline stage")
    if base:
        ax.plot([x for _, x, _ in base], [y for _, _, y in base], "s", color=BASELINE_COLOR, ms=8,
                label="baseline")
    if shown:
        xs = [x for _, x, _ in shown]
        if log_x and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
            xlabel += " (log scale)"
        ax.margins(x=0.2, y=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return [(p.name, x, y, p.baseline) for p, x, y in shown]


@_styled
def tradeoff_figure(points: Sequence[StagePoint]) -> bytes:
    """Clean (top row) and robust (bottom row) accuracy against size, training time and, where
    measured, training energy."""
    have_energy = any(p.energy_j is not None for p in points)
    cols = 3 if have_energy else 2
    fig = _new_figure(5.0 * cols, 8.0)
    axes = fig.subplots(2, cols, squeeze=False)
    t_scale, t_unit = _time_unit([p.time_s for p in points if p.time_s is not None])
    e_scale, e_unit = _energy_unit([p.energy_j for p in points if p.energy_j is not None])
    rows = [("clean accuracy (%)", lambda p: p.clean_pct), ("robust accuracy (%)", lambda p: p.robust_pct)]
    labels_of = []
    for r, (ylabel, y_of) in enumerate(rows):
        labels_of.append((axes[r][0], _scatter_panel(axes[r][0], points, lambda p: p.params, y_of,
                                                     "model size (parameters)", ylabel, log_x=True)))
        axes[r][0].xaxis.set_major_formatter(FuncFormatter(_si))
        labels_of.append((axes[r][1], _scatter_panel(axes[r][1], points, lambda p: None if p.time_s is None else p.time_s / t_scale,
                                                     y_of, f"training time to reach the model ({t_unit})", ylabel, log_x=False)))
        if have_energy:
            labels_of.append((axes[r][2], _scatter_panel(axes[r][2], points,
                                                         lambda p: None if p.energy_j is None else p.energy_j / e_scale, y_of,
                                                         f"training energy to reach the model ({e_unit})", ylabel, log_x=False)))
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncol=len(handles), frameon=False)
    fig.canvas.draw()  # one layout pass for all panels; annotations do not move the limits
    for ax, items in labels_of:
        _place_labels(ax, items)
    return _png(fig)


@_styled
def heatmap_figure(rows: Sequence[str], severities: Sequence[str], values: Sequence[Sequence[float | None]],
                   title: str, vmin: float, vmax: float, extras_from: int | None = None) -> bytes:
    """Accuracy (%) per corruption (rows) x severity (columns), numbers written in the cells.
    `vmin`/`vmax` are shared by every heatmap of a report so colours compare across models;
    rows from `extras_from` on (corruptions outside the mean) sit below a white rule."""
    import numpy as np

    data = np.array([[math.nan if v is None else v for v in row] for row in values], dtype=float)
    fig = _new_figure(1.0 + 0.75 * len(severities) + 1.6, 0.9 + 0.32 * len(rows))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(severities)), labels=list(severities))
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel("severity")
    ax.set_title(title, fontsize=10)
    mid = (vmin + vmax) / 2
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            v = data[i, j]
            text = "n/a" if math.isnan(v) else f"{v:.0f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if math.isnan(v) or v > mid else "white")
    if extras_from is not None and 0 < extras_from < len(rows):
        ax.axhline(extras_from - 0.5, color="white", lw=3)
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    bar.set_label("accuracy (%)")
    return _png(fig)


@_styled
def width_profile_figure(groups: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]]) -> bytes:
    """Grouped bars: width of each layer group before growth and after each growth shot."""
    import numpy as np

    n = len(series)
    fig = _new_figure(max(6.0, 0.55 * len(groups) * max(n, 2) / 2 + 2.0), 4.2)
    ax = fig.subplots()
    x = np.arange(len(groups))
    bar_w = 0.8 / max(n, 1)
    colors = ["#9e9e9e", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"]
    for k, (label, widths) in enumerate(series):
        heights = [math.nan if w is None else w for w in widths]
        ax.bar(x + (k - (n - 1) / 2) * bar_w, heights, bar_w, label=label, color=colors[k % len(colors)])
    if n >= 2:  # growth factor over the final bars
        before, after = series[0][1], series[-1][1]
        for i, (b, a) in enumerate(zip(before, after)):
            if b and a:
                ax.annotate(f"×{a / b:.1f}", (x[i] + (n - 1) / 2 * bar_w, a), textcoords="offset points",
                            xytext=(0, 2), ha="center", fontsize=7.5, color="0.25")
    ax.set_xticks(x, labels=list(groups), rotation=45 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center")
    ax.set_xlabel("layer group")
    ax.set_ylabel("width (channels)")
    ax.margins(y=0.12)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(frameon=False)
    return _png(fig)


@dataclass(frozen=True)
class DeployPoint:
    model: str
    backend: str
    precision: str
    latency_ms: float | None
    clean_pct: float | None
    robust_pct: float | None


_PRECISION_MARKERS = {"fp32": "o", "fp16": "^", "int8": "s", "bf16": "D", "fp8": "P"}


@_styled
def deployment_figure(points: Sequence[DeployPoint]) -> bytes:
    """Accuracy against median latency, one column per backend: colour = model, marker = precision."""
    backends = sorted({p.backend for p in points})
    models = list(dict.fromkeys(p.model for p in points))
    palette = matplotlib.colormaps["tab10"]
    color = {m: palette(i % 10) for i, m in enumerate(models)}
    fig = _new_figure(4.6 * len(backends) + 1.8, 7.2)
    axes = fig.subplots(2, len(backends), squeeze=False, sharey="row")
    for c, backend in enumerate(backends):
        for r, (ylabel, attr) in enumerate((("clean accuracy (%)", "clean_pct"), ("robust accuracy (%)", "robust_pct"))):
            ax = axes[r][c]
            shown = [p for p in points if p.backend == backend and p.latency_ms is not None and getattr(p, attr) is not None]
            for p in shown:
                ax.plot(p.latency_ms, getattr(p, attr), _PRECISION_MARKERS.get(p.precision, "X"), color=color[p.model], ms=8)
            if not shown:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_title(backend if r == 0 else "")
            ax.set_xlabel("latency p50 (ms)")
            if c == 0:
                ax.set_ylabel(ylabel)
            ax.margins(0.15)
            ax.grid(True, alpha=0.3)
    from matplotlib.lines import Line2D

    plotted = [p for p in points if p.latency_ms is not None and (p.clean_pct is not None or p.robust_pct is not None)]
    models_shown = list(dict.fromkeys(p.model for p in plotted))
    precisions = list(dict.fromkeys(p.precision for p in plotted))
    fig.legend(handles=[Line2D([], [], ls="", marker="o", color=color[m], label=m, ms=8) for m in models_shown],
               loc="outside right upper", frameon=False, title="model")
    fig.legend(handles=[Line2D([], [], ls="", marker=_PRECISION_MARKERS.get(pr, "X"), color="0.3", label=pr, ms=8)
                        for pr in precisions], loc="outside right lower", frameon=False, title="precision")
    return _png(fig)


@_styled
def curves_figure(series: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> bytes:
    """Clean and robust (probe) accuracy against cumulative training time, one line per run, one marker per epoch
    (points from gear_trt.records.run_curve)."""
    fig = _new_figure(11.0, 4.2)
    axes = fig.subplots(1, 2)
    scale, unit = _time_unit([p["seconds"] for _, points in series for p in points])
    for ax, key, title in zip(axes, ("clean_acc", "robust_probe_acc"), ("clean accuracy (%)", "robust accuracy, probe (%)")):
        for label, points in series:
            shown = [p for p in points if p.get(key) is not None]
            if shown:
                ax.plot([p["seconds"] / scale for p in shown], [100 * p[key] for p in shown], "-", marker=".", label=label)
        ax.set_xlabel(f"training time ({unit}, evaluation excluded)")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend(frameon=False, loc="lower right")
    return _png(fig)
