"""``seal report``: one self-contained HTML page of any runs, several of a kind side by side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seal_lm.cli.options import option, positional
from seal_lm.report import write_report


@dataclass
class ReportConfig:
    runs: tuple[str, ...] = positional("Run directories (any command's --out; a seal serve --run), one or more.")
    out: str = option("report.html", "The HTML file to write (outside the runs).")
    label: tuple[str, ...] = option(
        (), "Names shown for runs, comma-separated NAME=RUN (RUN as given above; default: the folder's name)."
    )

    def labels(self) -> dict[str, str]:
        """RUN → NAME from --label, each RUN checked to be one of the runs given."""
        labels = {}
        for item in self.label:
            name, separator, run = item.partition("=")
            if not separator or not name or run not in self.runs:
                raise ValueError(
                    f"--label {item!r}: give NAME=RUN with RUN one of the runs given ({', '.join(self.runs)})."
                )
            labels[run] = name
        return labels


def report(config: ReportConfig) -> Path:
    """Write the report of the runs; prints and returns its path."""
    path = write_report(config.runs, config.out, config.labels())
    print(f"Report written to {path}")
    return path


def see_it(run: Path) -> str:
    """The line a command that made ``run`` ends with: how to see it at a glance."""
    return f"See it at a glance: seal report {run} --out {Path(run).name}.html"
