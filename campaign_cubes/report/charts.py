"""The report's charts: PNG files drawn with matplotlib's Agg renderer, offline.

Figures are built with `matplotlib.figure.Figure` (no pyplot, no global state, no
display). Each function takes plain series and a path and writes one PNG; the
caller decides what to do when there is nothing to draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # offline, no display; chosen before the imports below

from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter
from matplotlib.typing import RcKeyType

DPI = 100
WIDTH_INCHES = 11.0
STATUS_COLOURS = {
    "presented": "#4C78A8",
    "accepted": "#54A24B",
    "rejected": "#E45756",
    "control group": "#9D9D9D",
}
# Qualitative palette (Tableau 10), then grey for "all others".
PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#FF9DA6", "#9D755D", "#BAB0AC")
OTHERS_COLOUR = "#D0D0D0"
# Up to this many buckets, stacked series are bars; beyond, areas.
MAX_BARS = 100
ERROR_COLOURS = ("#E45756", "#F58518", "#B279A2", "#9D755D", "#EECA3B", "#72B7B2")

Series = Mapping[str, Sequence[float | None]]

_STYLE: dict[RcKeyType, Any] = {
    "font.size": 10.5,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#E6E6E6",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "legend.fontsize": 9.5,
    "figure.facecolor": "white",
}


def _figure(height: float, width: float = WIDTH_INCHES) -> Figure:
    with matplotlib.rc_context(_STYLE):
        return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _thousands(value: float, _position: int | None = None) -> str:
    return f"{value:,.0f}"


def _date_axis(axes: Axes, x: Sequence[date]) -> None:
    """Dates on the x axis, framed on the buckets; each bucket labelled when there are few."""
    if not x:
        return
    pad = 0.6 * _gap_days(x)  # in days, matplotlib's date unit
    # matplotlib's dates, like Python's, end at years 1 and 9999: a bucket on the
    # calendar's first or last day is framed without a margin beyond them
    # (matplotlib.dates has no type annotations, hence the ignores)
    first, last = mdates.date2num(date.min), mdates.date2num(date.max)  # type: ignore[no-untyped-call]
    axes.set_xlim(max(mdates.date2num(x[0]) - pad, first), min(mdates.date2num(x[-1]) + pad, last))  # type: ignore[no-untyped-call]
    if len(x) <= 12:
        monthly = _gap_days(x) >= 28
        axes.set_xticks(_days(x))
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%b %Y" if monthly else "%d %b"))  # type: ignore[no-untyped-call]
        return
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _days(x: Sequence[date]) -> list[Any]:
    """`x` for matplotlib, which draws dates through its unit converters (its stubs know only numbers)."""
    return list(x)


def _gap_days(x: Sequence[date]) -> int:
    """Days between two buckets (1 for a lone bucket)."""
    gaps = [(b - a).days for a, b in pairwise(x)]
    return min(gaps) if gaps else 1


def _count_axis(axes: Axes, label: str) -> None:
    axes.set_ylabel(label)
    axes.yaxis.set_major_formatter(FuncFormatter(_thousands))
    axes.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    axes.set_ylim(bottom=0)


def _markers(x: Sequence[date]) -> dict[str, Any]:
    """Dots on the points of a short series, so that even a single day is visible."""
    return {"marker": "o", "markersize": 3.5 if len(x) > 1 else 6} if len(x) <= 45 else {}


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if value is None else float(value) for value in values]


def status_lines_per_channel(
    path: Path,
    title: str,
    x: Sequence[date],
    panels: Sequence[tuple[str, Series]],
    y_label: str,
) -> Path:
    """Small multiples: one panel per channel, one line per proposition status."""
    columns = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // columns)
    with matplotlib.rc_context(_STYLE):
        figure = _figure(height=1.0 + 2.3 * rows)
        grid = figure.subplots(rows, columns, sharex=True, squeeze=False)
        for index, (panel_title, series) in enumerate(panels):
            axes: Axes = grid[index // columns][index % columns]
            for name, values in series.items():
                axes.plot(
                    _days(x), _nan(values), label=name, color=STATUS_COLOURS.get(name), linewidth=1.6, **_markers(x)
                )
            axes.set_title(panel_title, fontsize=10.5, loc="left")
            _count_axis(axes, y_label if index % columns == 0 else "")
            _date_axis(axes, x)
        for index in range(len(panels), rows * columns):
            grid[index // columns][index % columns].set_visible(False)
        handles, labels = grid[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside upper right", ncols=len(labels))
        figure.suptitle(title, x=0.01, ha="left", fontweight="bold", fontsize=12.5)
        return _save(figure, path)


def rate_bars(
    path: Path,
    title: str,
    labels: Sequence[str],
    rates: Sequence[float],
    notes: Sequence[str],
    x_label: str,
) -> Path:
    """Horizontal bars of shares (0..1), first label on top, each annotated."""
    with matplotlib.rc_context(_STYLE):
        figure = _figure(height=1.2 + 0.36 * len(labels))
        axes = figure.subplots()
        positions = range(len(labels))
        axes.barh(positions, rates, color=STATUS_COLOURS["accepted"], height=0.65)
        axes.set_yticks(positions, labels=labels)
        axes.invert_yaxis()
        axes.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        axes.set_xlim(0, max(1e-9, *rates) * 1.3)
        axes.grid(axis="y", visible=False)
        for position, rate, note in zip(positions, rates, notes, strict=True):
            axes.annotate(
                f"{rate:.1%}  ({note})",
                (rate, position),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
            )
        axes.set_xlabel(x_label)
        axes.set_title(title, loc="left")
        return _save(figure, path)


def _bar_width(x: Sequence[date]) -> float:
    """Width of a bar in days: most of the gap between two buckets."""
    return 0.8 * _gap_days(x)


def stacked_areas(
    path: Path,
    title: str,
    x: Sequence[date],
    series: Series,
    y_label: str,
    *,
    percent: bool = False,
    colours: Sequence[str] = PALETTE,
) -> Path:
    """Stacked shares or counts over time, legend on the right; `percent` for shares (0..1).

    Few buckets are drawn as stacked bars (each bucket is visible as such), many as
    stacked areas. The first series is at the bottom of the stack and of the legend.
    """
    with matplotlib.rc_context(_STYLE):
        figure = _figure(height=4.6)
        axes = figure.subplots()
        names = list(series)
        palette = [
            OTHERS_COLOUR if name.startswith("all other") else colours[i % len(colours)] for i, name in enumerate(names)
        ]
        values = [[0.0 if v is None else float(v) for v in series[name]] for name in names]
        if len(x) <= MAX_BARS:
            bottom = [0.0] * len(x)
            for name, row, colour in zip(names, values, palette, strict=True):
                axes.bar(
                    _days(x),
                    row,
                    width=_bar_width(x),
                    bottom=bottom,
                    label=name,
                    color=colour,
                    edgecolor="white",
                    linewidth=0.4,
                )
                bottom = [b + v for b, v in zip(bottom, row, strict=True)]
        else:
            axes.stackplot(_days(x), values, labels=names, colors=palette, linewidth=0.3, edgecolor="white")
        handles, labels = axes.get_legend_handles_labels()
        axes.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0))
        if percent:
            axes.set_ylabel(y_label)
            axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
            axes.set_ylim(bottom=0)
        else:
            _count_axis(axes, y_label)
        _date_axis(axes, x)
        axes.set_title(title, loc="left")
        return _save(figure, path)


def volume_and_rate(
    path: Path,
    title: str,
    x: Sequence[date],
    volumes: Series,
    rate: Sequence[float | None],
    y_label: str,
    rate_label: str,
) -> Path:
    """Two stacked panels sharing time: volumes (lines) above, a rate (%) below."""
    with matplotlib.rc_context(_STYLE):
        figure = _figure(height=5.4)
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        for (name, values), colour in zip(volumes.items(), PALETTE, strict=False):  # at most as many as colours
            top.plot(_days(x), _nan(values), label=name, color=colour, linewidth=1.6, **_markers(x))
        _count_axis(top, y_label)
        top.legend(loc="upper left", ncols=len(volumes))
        top.set_title(title, loc="left")
        bottom.plot(_days(x), _nan(rate), color=STATUS_COLOURS["accepted"], linewidth=1.8, **_markers(x))
        bottom.set_ylabel(rate_label)
        bottom.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        known = [value for value in rate if value is not None]
        low = min(known) if known else 0.0
        bottom.set_ylim(max(0.0, low - 0.1), 1.02)
        _date_axis(bottom, x)
        return _save(figure, path)


def duration_bars(
    path: Path,
    title: str,
    labels: Sequence[str],
    panels: Sequence[tuple[str, Series]],
) -> Path:
    """Side-by-side panels of horizontal bars of durations in seconds, each with its own unit."""
    with matplotlib.rc_context(_STYLE):
        bars = len(labels) * max(len(series) for _, series in panels)
        figure = _figure(height=1.5 + 0.26 * bars)
        grid = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for axes, (panel_title, series) in zip(grid, panels, strict=True):
            known = [v for values in series.values() for v in values if v is not None]
            unit, scale = duration_unit(max(known) if known else 0.0)
            height = 0.8 / max(1, len(series))
            for index, ((name, values), colour) in enumerate(zip(series.items(), PALETTE, strict=False)):
                offsets = [position - 0.4 + height * (index + 0.5) for position in range(len(labels))]
                scaled = [0.0 if v is None else v / scale for v in values]
                axes.barh(offsets, scaled, height=height * 0.92, color=colour, label=name)
                for offset, value in zip(offsets, values, strict=True):
                    text = "n/a" if value is None else format_duration(value)
                    axes.annotate(
                        text,
                        (0.0 if value is None else value / scale, offset),
                        xytext=(3, 0),
                        textcoords="offset points",
                        va="center",
                        fontsize=8.5,
                    )
            axes.set_yticks(range(len(labels)), labels=labels)
            axes.set_xlabel(f"{unit}")
            axes.set_xlim(0, (max(known) / scale if known else 1.0) * 1.25)
            axes.grid(axis="y", visible=False)
            axes.set_title(panel_title, loc="left", fontsize=11)
        grid[0].invert_yaxis()
        handles, names = grid[0].get_legend_handles_labels()
        figure.legend(handles, names, loc="outside upper right", ncols=len(names))
        figure.suptitle(title, x=0.01, ha="left", fontweight="bold", fontsize=12.5)
        return _save(figure, path)


def duration_unit(seconds: float) -> tuple[str, float]:
    """The unit a duration axis reads best in, and its length in seconds."""
    if seconds >= 2 * 3600:
        return "hours", 3600.0
    if seconds >= 2 * 60:
        return "minutes", 60.0
    return "seconds", 1.0


def format_duration(seconds: float) -> str:
    """12.3 s, 4.5 min, 23.0 h: one decimal, in the unit that reads best."""
    unit, scale = duration_unit(abs(seconds))
    short = {"hours": "h", "minutes": "min", "seconds": "s"}[unit]
    return f"{seconds / scale:,.1f} {short}"
