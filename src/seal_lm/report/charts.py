"""The report's figures: matplotlib (Agg) figures as ``data:image/png;base64`` URIs, embedded in the page.

Each function takes numbers already read from a run's records and only draws them.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Collection, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# The ARC palette, colour 0 to 9
ARC_COLOURS = (
    "#000000",
    "#0074D9",
    "#FF4136",
    "#2ECC40",
    "#FFDC00",
    "#AAAAAA",
    "#F012BE",
    "#FF851B",
    "#7FDBFF",
    "#870C25",
)
DECISION_COLOURS = {"initial": "#7f7f7f", "accepted": "#2ca02c", "rejected": "#d62728", "retry-with-replay": "#ff7f0e"}
DPI = 100


def png_uri(figure: plt.Figure) -> str:
    """The figure as a PNG data URI (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_uri(data: bytes) -> str:
    """A PNG file's bytes as a data URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def grouped_bars(
    groups: Sequence[str],
    series: dict[str, Sequence[float | None]],
    errors: dict[str, Sequence[tuple[float, float] | None]] | None,
    title: str,
    axis: plt.Axes,
    share: bool = False,
) -> None:
    """Bars per group (x) and series (one colour per series); ``errors`` are (below, above) lengths or None; a ``share`` is on 0..1."""
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        xs = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [math.nan if v is None else v for v in values]
        spans = (errors or {}).get(name)
        yerr = None
        if spans is not None:
            yerr = [[0 if s is None else s[0] for s in spans], [0 if s is None else s[1] for s in spans]]
        axis.bar(xs, heights, width, label=name, yerr=yerr, capsize=3)
    axis.set_xticks(range(len(groups)), groups, fontsize=8)
    axis.set_title(title, fontsize=9)
    axis.axhline(0, color="black", linewidth=0.6)
    axis.grid(axis="y", alpha=0.3)
    if share:
        axis.set_ylim(0, 1)


def panels(count: int, width: float = 3.2, height: float = 2.8) -> tuple[plt.Figure, list[plt.Axes]]:
    """A row of ``count`` axes."""
    figure, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False, layout="constrained")
    return figure, list(axes[0])


def lines_across(
    xlabels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    errors: dict[str, Sequence[float | None]],
    title: str,
    ylabel: str,
) -> str:
    """Shares (0..1), one line per series across ``xlabels`` (e.g. a condition's accuracy across round policies), ± the given errors."""
    figure, (axis,) = panels(1, width=max(4.0, 1.2 * len(xlabels) + 2), height=3.0)
    _lines(axis, xlabels, series, errors, title, ylabel)
    axis.set_ylim(-0.05, 1.05)
    return png_uri(figure)


def lines_panels(
    xlabels: Sequence[str], measures: dict[str, dict[str, Sequence[float | None]]], shares: Collection[str] = ()
) -> str:
    """One panel per measure (titled by its key), each with one line per series across ``xlabels``; ``shares`` are on 0..1."""
    figure, axes = panels(len(measures), width=max(3.6, 1.0 * len(xlabels) + 1.8), height=2.8)
    for axis, (title, series) in zip(axes, measures.items()):
        _lines(axis, xlabels, series, {}, title, "")
        if title in shares:
            axis.set_ylim(-0.05, 1.05)
    return png_uri(figure)


def _lines(axis: plt.Axes, xlabels: Sequence[str], series: dict, errors: dict, title: str, ylabel: str) -> None:
    for name, values in series.items():
        ys = [math.nan if v is None else v for v in values]
        yerr = [0 if e is None else e for e in errors.get(name, [None] * len(ys))]
        axis.errorbar(range(len(xlabels)), ys, yerr=yerr, marker="o", capsize=3, label=name)
    axis.set_xticks(range(len(xlabels)), xlabels, fontsize=8)
    axis.set_xlim(-0.5, len(xlabels) - 0.5)
    axis.set_title(title, fontsize=9)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)


def sorted_differences(differences: Sequence[float], title: str, ylabel: str) -> str:
    """One bar per context, its paired difference, sorted: where a condition wins and loses."""
    figure, (axis,) = panels(1, width=6.0, height=2.6)
    values = sorted(differences)
    axis.bar(
        range(len(values)),
        values,
        color=["#d62728" if v < 0 else "#2ca02c" if v > 0 else "#7f7f7f" for v in values],
        width=0.9,
    )
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_xticks([])
    axis.set_xlabel(f"{len(values)} passages, sorted", fontsize=8)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.set_title(title, fontsize=9)
    return png_uri(figure)


def distributions(labels: Sequence[str], values: Sequence[Sequence[float]], title: str, ylabel: str) -> str:
    """A box plot of shares (0..1) with every point beside it, per label (e.g. the rewards of each round)."""
    figure, (axis,) = panels(1, width=max(4.0, 1.4 * len(labels) + 1.5), height=3.0)
    for index, points in enumerate(values):
        if points:
            axis.boxplot([points], positions=[index], widths=0.5, showfliers=False)
            spread = [
                index + 0.3 + 0.1 * ((i * 7919) % 11) / 10 for i in range(len(points))
            ]  # deterministic spread, no randomness
            axis.scatter(spread, points, s=8, alpha=0.6, color="#1f77b4")
    axis.set_xticks(range(len(labels)), labels, fontsize=8)
    axis.set_xlim(-0.6, len(labels) - 0.2)
    axis.set_ylim(-0.05, 1.05)
    axis.set_title(title, fontsize=9)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    return png_uri(figure)


def ledger_timeline(updates: Sequence[dict], rollbacks: Sequence[float]) -> str:
    """Each update's probe and retention means, before → after, coloured by its decision; rollbacks as dashed lines."""
    figure, axes = panels(2, width=4.6, height=2.8)
    for axis, (name, key) in zip(
        axes, [("probes of the new document", "probes"), ("retention (earlier documents)", "retention")]
    ):
        for update in updates:
            before, after = update[f"{key}_before"], update[f"{key}_after"]
            if before is None or after is None:
                continue
            colour = DECISION_COLOURS.get(update["decision"], "#9467bd")
            axis.annotate(
                "", (update["id"], after), (update["id"], before), arrowprops={"arrowstyle": "->", "color": colour}
            )
            axis.scatter([update["id"]], [after], color=colour, s=18, zorder=3)
        for position in rollbacks:
            axis.axvline(position, color="#9467bd", linestyle="--", linewidth=1)
        axis.set_ylim(-0.05, 1.05)
        axis.set_xlim(0.5, max([u["id"] for u in updates] + list(rollbacks)) + 0.5)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("update", fontsize=8)
        axis.set_ylabel("mean score, before → after", fontsize=8)
        axis.set_title(name, fontsize=9)
        axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=d) for d, c in DECISION_COLOURS.items()]
    handles.append(plt.Line2D([], [], linestyle="--", color="#9467bd", label="rollback"))
    axes[1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return png_uri(figure)


def arc_grids(rows: Sequence[tuple[str, Sequence[tuple[str, list[list[int]] | None]]]]) -> str:
    """Grids in ARC colours, one row per (name, its titled grids): e.g. a demonstration's input and output, or the truth and a configuration's attempts."""
    columns = max(len(grids) for _, grids in rows)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(1.3 * columns + 1.2, 1.35 * len(rows)), squeeze=False, layout="constrained"
    )
    for (name, grids), line in zip(rows, axes):
        line[0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
        for axis, (title, grid) in zip(line, grids):
            _grid(axis, title, grid)
        for axis in line[len(grids) :]:
            axis.axis("off")
    return png_uri(figure)


def _grid(axis: plt.Axes, title: str, grid: list[list[int]] | None) -> None:
    if grid:
        axis.imshow(grid, cmap=ListedColormap(ARC_COLOURS), vmin=0, vmax=9)
        axis.set_xticks([x - 0.5 for x in range(1, len(grid[0]))], minor=True)
        axis.set_yticks([y - 0.5 for y in range(1, len(grid))], minor=True)
        axis.grid(which="minor", color="#555555", linewidth=0.5)
    else:
        axis.text(0.5, 0.5, "no grid", ha="center", va="center", fontsize=8, transform=axis.transAxes)
    axis.set_title(title, fontsize=8)
    axis.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
