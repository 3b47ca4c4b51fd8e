"""``seal report``: any run directories as one self-contained HTML page (CSS inline, figures embedded as PNG).

Runs are recognised (:mod:`seal_lm.report.runs`), grouped by kind, and each kind's runs are compared
side by side in one section (:mod:`seal_lm.report.sections`), drawn with matplotlib
(:mod:`seal_lm.report.charts`) and rendered by the jinja2 template ``templates/report.html.j2``, which
escapes every text it is given: model-written text is shown as text, never run as HTML.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2

from seal_lm.domains.knowledge.data import short_id
from seal_lm.report import sections
from seal_lm.report.runs import Run, open_run

# kind → (section title, the function that builds it), in the order sections appear
SECTIONS: dict[str, tuple[str, Callable[[list[Run]], dict[str, Any]]]] = {
    "eval-knowledge": ("Knowledge incorporation (seal eval knowledge)", sections.eval_knowledge),
    "train": ("Self-edit policy training, ReST-EM (seal train)", sections.train),
    "eval-arc": ("Abstract reasoning (seal eval arc)", sections.eval_arc),
    "eval-continual": ("Forgetting under sequential updates (seal eval continual)", sections.eval_continual),
    "ledger": ("Continual updates (seal adapt / seal serve)", sections.ledger),
}


def render_report(runs: Sequence[Run]) -> str:
    """The report page of ``runs``, one section per kind, as HTML text."""
    groups = {kind: [run for run in runs if run.kind == kind] for kind in SECTIONS}
    shown = [
        {"kind": kind, "title": SECTIONS[kind][0], **SECTIONS[kind][1](group)}
        for kind, group in groups.items()
        if group
    ]
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("seal_lm.report", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    environment.filters.update(pct=_percent, num=_number, short_id=short_id)
    made = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return environment.get_template("report.html.j2").render(runs=runs, sections=shown, made=made)


def write_report(paths: Sequence[str | Path], out: str | Path, labels: dict[str, str] | None = None) -> Path:
    """Read the runs at ``paths`` (``labels``: path → name shown) and write their report to ``out``; returns its path."""
    labels = labels or {}
    runs = [open_run(path, labels.get(str(path), "")) for path in paths]
    out = Path(out)
    for run in runs:
        if out.resolve().is_relative_to(run.path.resolve()):
            raise ValueError(
                f"--out {out} is inside the run {run.path}; a report never writes into a run. Pass a path outside it."
            )
    page = render_report(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _percent(value: float | None, signed: bool = False) -> str:
    """A share as a percentage with one decimal ('' for none)."""
    if value is None:
        return ""
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _number(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"
