"""The report's figures: per-seed metrics of an ablation, cost against length on log-log axes,
accuracy against cost (the Pareto front of :mod:`harness.analysis.report.pareto`) and a task's sample images.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend), in the default
style at a fixed size and dpi, and saved without a software version, so the same rows give the same
bytes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.analysis.report.analysis import PROFILE_QUANTITIES, ProfileSeries, TaskSummary
from harness.analysis.report.fmt import finite, sig

__all__ = ["cost_figure", "metric_figure", "mosaic", "pareto_figure", "samples_figure"]

_RC: Any = {"figure.dpi": 100, "savefig.dpi": 100, "font.family": "DejaVu Sans", "font.size": 9,
            "axes.titlesize": 10}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # draw on Agg directly: no pyplot, no global backend switch
    return fig


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def _colors() -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i) for i in range(10)]


def metric_figure(ts: TaskSummary, path: Path) -> None:
    import matplotlib
    import matplotlib.style

    n = len(ts.variants)
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        fig = _new_figure(min(14.0, max(4.5, 1.2 + 0.9 * n)), 3.6)
        ax = fig.add_subplot(1, 1, 1)
        colors = _colors()
        for i, s in enumerate(ts.variants):
            ys = list(s.values.values())
            k = len(ys)
            offs = [0.0] if k == 1 else [-0.2 + 0.4 * j / (k - 1) for j in range(k)]
            ax.scatter([i + o for o in offs], ys, s=22, color=colors[i % len(colors)], alpha=0.8, zorder=2)
            if not ys:
                ax.text(i, 0.03, "no ok run", transform=ax.get_xaxis_transform(), ha="center", fontsize=7,
                        color="gray")
            if s.n >= 1 and finite(s.mean):
                err = [[s.half_width], [s.half_width]] if finite(s.half_width) else None
                ax.errorbar([i + 0.32], [s.mean], yerr=err, fmt="D", color="black", ms=4, capsize=3, zorder=3)
        names = [s.variant for s in ts.variants]
        crowded = 0.08 * sum(len(v) + 2 for v in names) > fig.get_figwidth() - 1.0  # ~0.08 in per 9 pt char
        ax.set_xticks(range(n))
        ax.set_xticklabels(names, rotation=30 if crowded else 0, ha="right" if crowded else "center")
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylabel(ts.metric or "value")
        ax.set_title(f"{ts.suite} / {ts.task}: {ts.metric} per seed "
                     f"({'higher' if ts.higher_is_better else 'lower'} is better)")
        ax.grid(axis="y", alpha=0.3)
        # fixed margins instead of tight_layout (slow); rotated labels need room in proportion to their length
        label_in = 0.0375 * max(len(v) for v in names) if crowded else 0.0
        fig.subplots_adjust(left=0.75 / fig.get_figwidth(), right=0.98, top=0.9,
                            bottom=min(0.5, (0.45 + label_in) / fig.get_figheight()))
        _save(fig, path)


def _loglog(ax: Any, xs: list[float]) -> None:
    """Log-log axes labelled with plain numbers (mathtext tick labels are slow and hard to read)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # labels even within one decade
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: sig(v, 1)))  # ticks are exactly 1, 2, 5 x 10^k
    ax.yaxis.set_minor_formatter(NullFormatter())


def cost_figure(series: list[ProfileSeries], suite: str, task: str, path: Path) -> None:
    import matplotlib
    import matplotlib.style

    labels = {"step_ms": "step time (ms)", "act_bytes": "saved activations (MiB)",
              "mem_bytes": "peak memory (MiB)"}
    scale = {"step_ms": 1.0, "act_bytes": 1.0 / 2**20, "mem_bytes": 1.0 / 2**20}
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        fig = _new_figure(13.0, 4.0)
        colors = _colors()
        for j, q in enumerate(PROFILE_QUANTITIES):
            ax = fig.add_subplot(1, len(PROFILE_QUANTITIES), j + 1)
            drawn = False
            for i, ps in enumerate(series):
                pts = ps.points.get(q, [])
                if not pts:
                    continue
                k = ps.exponents.get(q, math.nan)
                label = f"{ps.variant} (k={k:.2f})" if finite(k) else ps.variant
                ax.plot([x for x, _ in pts], [y * scale[q] for _, y in pts], marker="o", ms=4,
                        color=colors[i % len(colors)], label=label)
                drawn = True
            if drawn:
                _loglog(ax, sorted({x for ps in series for x, _ in ps.points.get(q, [])}))
                ax.legend(fontsize=7, loc="upper left")
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel("sequence length")
            ax.set_title(labels[q])
            ax.grid(alpha=0.3)
        fig.suptitle(f"{suite} / {task}: cost against sequence length (log-log)")
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.86, wspace=0.25)
        _save(fig, path)


_AXIS_LABELS = {"step_ms": "median step time (ms)", "mem_bytes": "peak memory of a step (MiB)"}
_AXIS_SCALE = {"step_ms": 1.0, "mem_bytes": 1.0 / 2**20}


def pareto_figure(ts: TaskSummary, points: dict[str, list[Any]], path: Path) -> None:
    """The metric (mean, 95% CI bars) against each cost axis in ``points`` (axis -> ParetoPoints);
    filled markers are the front of that axis, hollow ones are dominated; every point is labelled."""
    import matplotlib
    import matplotlib.style

    colors = _colors()
    order = {s.variant: i for i, s in enumerate(ts.variants)}
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        fig = _new_figure(11.0, 4.2)
        for j, (axis, pts) in enumerate(sorted(points.items(), key=lambda kv: kv[0] != "step_ms")):
            ax = fig.add_subplot(1, len(points), j + 1)
            for p in pts:
                color = colors[order.get(p.variant, 0) % len(colors)]
                x = p.cost * _AXIS_SCALE.get(axis, 1.0)
                err = [[p.half_width], [p.half_width]] if finite(p.half_width) else None
                ax.errorbar([x], [p.mean], yerr=err, fmt="o", ms=7, capsize=3, color=color,
                            mfc=color if p.on_front else "white", mew=1.5, zorder=3)
                ax.annotate(p.variant, (x, p.mean), textcoords="offset points", xytext=(5, 4), fontsize=7)
            ax.margins(x=0.2, y=0.1)  # room for the labels
            if not pts:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(_AXIS_LABELS.get(axis, axis))
            ax.set_ylabel(ts.metric or "value")
            ax.grid(alpha=0.3)
        better = "higher" if ts.higher_is_better else "lower"
        fig.suptitle(f"{ts.suite} / {ts.task}: {ts.metric} ({better} is better) against cost; "
                     "filled: on the front")
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.88, wspace=0.25)
        _save(fig, path)


SAMPLE_COLS = 8  # images per mosaic row in a samples figure
GUTTER = (70, 130, 200)  # the colour between tiles


def mosaic(images: list[Any]) -> Any:
    """Images (nested lists H x W or H x W x 3, ints 0..255) tiled SAMPLE_COLS to a row, RGB uint8, with
    a one-pixel blue gutter (no grey level); smaller images sit in the top-left corner of their tile."""
    import numpy as np

    arrs = [np.asarray(im, dtype=np.uint8) for im in images]
    arrs = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrs]
    h, w = max(a.shape[0] for a in arrs), max(a.shape[1] for a in arrs)
    cols = min(SAMPLE_COLS, len(arrs))
    nrows = -(-len(arrs) // cols)
    out = np.empty((nrows * (h + 1) - 1, cols * (w + 1) - 1, 3), dtype=np.uint8)
    out[...] = GUTTER  # also fills the tiles after the last image
    for i, a in enumerate(arrs):
        y, x = (i // cols) * (h + 1), (i % cols) * (w + 1)
        out[y : y + a.shape[0], x : x + a.shape[1]] = a
    return out


def samples_figure(samples: list[tuple[str, dict[str, list]]], title: str, path: Path) -> None:
    """One row per (variant, panels), the panels side by side, each a mosaic of its images."""
    import matplotlib
    import matplotlib.style

    panels = sorted({p for _, s in samples for p in s}, key=lambda p: min(
        list(s).index(p) for _, s in samples if p in s))  # the order the tasks give them in
    n_rows, n_cols = len(samples), max(1, len(panels))
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        fig = _new_figure(min(16.0, 1.0 + 3.2 * n_cols), 0.6 + 1.2 * n_rows)
        for i, (variant, panel_map) in enumerate(samples):
            for j, panel in enumerate(panels):
                ax = fig.add_subplot(n_rows, n_cols, i * n_cols + j + 1)
                ax.set_xticks([])
                ax.set_yticks([])
                if panel_map.get(panel):
                    ax.imshow(mosaic(panel_map[panel]), interpolation="nearest")
                else:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
                if i == 0:
                    ax.set_title(panel)
                if j == 0:
                    ax.set_ylabel(variant, fontsize=8)
        fig.suptitle(title)
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.02, top=1 - 0.5 / fig.get_figheight(),
                            wspace=0.05, hspace=0.08)
        _save(fig, path)
