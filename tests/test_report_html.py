"""``seal report`` on real runs of every kind, made on the tiny random model: the page's numbers are
results.json's, model-written text is escaped, every image decodes (in Python, and in headless
Chromium when it is installed), and the run directories are only read."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import TINY_RUN
from PIL import Image

from seal_lm.cli import main
from seal_lm.domains.arc.config import TTTConfig

TINY = [
    *TINY_RUN,
]
PASSAGES = [
    {
        "title": "Eiffel Tower",
        "context": "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
        "questions": [
            {"question": "Where is the Eiffel Tower?", "answer": "Paris"},
            {"question": "When was it completed?", "answer": "1889"},
        ],
    },
    {
        "title": "Mongol Empire",
        "context": "Genghis Khan founded the Mongol Empire. The Shah fled rather than surrender.",
        "questions": [{"question": "Who founded the Mongol Empire?", "answer": "Genghis Khan"}],
    },
    {
        "title": "Water",
        "context": "Water boils at 100 degrees at sea level.",
        "questions": [{"question": "At what temperature does water boil?", "answer": ["100 degrees", "100"]}],
    },
]
TASK = {
    "train": [
        {"input": [[1, 0], [0, 0]], "output": [[0, 1], [0, 0]]},
        {"input": [[0, 0], [2, 0]], "output": [[0, 0], [0, 2]]},
    ],
    "test": [{"input": [[0, 0], [4, 0]], "output": [[0, 0], [0, 4]]}],
}
SCRIPT = "<script>document.title='pwned'</script>"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """One run of each kind (two of eval knowledge), made by the seal command on the tiny model."""
    root = tmp_path_factory.mktemp("report-runs")
    data = root / "passages.json"
    data.write_text(json.dumps(PASSAGES))
    model = ["--model", str(tiny_model_dir)]
    made = {name: root / name for name in ("knowledge-0", "knowledge-1", "train", "continual", "adapt", "arc")}
    for seed in (0, 1):
        assert (
            main(
                [
                    "eval",
                    "knowledge",
                    *model,
                    "--data",
                    str(data),
                    "--out",
                    str(made[f"knowledge-{seed}"]),
                    "--conditions",
                    "base,passage,self-edit",
                    "--k",
                    "2",
                    "--bootstrap-samples",
                    "100",
                    "--seed",
                    str(seed),
                    *TINY,
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "train",
                "knowledge",
                *model,
                "--data",
                str(data),
                "--out",
                str(made["train"]),
                "--rounds",
                "2",
                "--contexts-per-round",
                "2",
                "--k",
                "2",
                "--policy-rank",
                "4",
                "--policy-alpha",
                "8",
                "--policy-epochs",
                "1",
                "--keep-rule",
                "threshold",
                "--keep-threshold",
                "0",
                *TINY,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "continual",
                *model,
                "--data",
                str(data),
                "--out",
                str(made["continual"]),
                "--n-passages",
                "2",
                "--sequences",
                "2",
                "--guard",
                "--probe-max-tokens",
                "24",
                *TINY,
            ]
        )
        == 0
    )
    stream = root / "stream.jsonl"
    stream.write_text(
        "".join(
            json.dumps({"title": p["title"], "text": p["context"], "questions": p["questions"]}) + "\n"
            for p in PASSAGES
        )
    )
    assert (
        main(["adapt", *model, "--stream", str(stream), "--out", str(made["adapt"]), "--probe-max-tokens", "24", *TINY])
        == 0
    )
    assert main(["rollback", "2", "--run", str(made["adapt"]), "--reason", "testing the timeline"]) == 0
    (root / "task.json").write_text(json.dumps(TASK))
    assert (
        main(
            [
                "eval",
                "arc",
                "--tasks",
                str(root / "task.json"),
                *model,
                "--k",
                "2",
                "--views",
                "2",
                "--max-examples",
                "4",
                "--lora-rank",
                "4",
                "--lora-alpha",
                "8",
                "--self-edit-max-tokens",
                "16",
                "--bootstrap-samples",
                "50",
                "--oracle-config",
                TTTConfig(learning_rate=1e-3, epochs=1).to_json(),
                "--out",
                str(made["arc"]),
            ]
        )
        == 0
    )
    return made


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> tuple[Path, str]:
    """The report of every run, written by ``seal report``, and its text."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    labels = f"seed 0={runs['knowledge-0']},seed 1={runs['knowledge-1']}"
    assert main(["report", *map(str, runs.values()), "--out", str(out), "--label", labels]) == 0
    return out, out.read_text(encoding="utf-8")


class Cells(HTMLParser):
    """The attributes of every element carrying ``data-value`` (the report's table numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if "data-value" in attributes:
            self.found.append(attributes)


def cells(html: str) -> list[dict[str, str]]:
    parser = Cells()
    parser.feed(html)
    return parser.found


def images(html: str) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(base64.b64decode(data)))
        for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    ]


def test_the_report_shows_every_run(runs, report):
    _, html = report
    for command in (
        "seal eval knowledge",
        "seal train knowledge",
        "seal eval continual",
        "seal adapt",
        "seal eval arc",
    ):
        assert command in html
    assert "seed 0" in html and "seed 1" in html  # --label
    assert "<pre>Water boils at 100 degrees at sea level.</pre>" in html  # a shown passage, from squad_gold.json
    assert "testing the timeline" in html and "rollback" in html  # the ledger's rollback event
    assert "Round 2: self-edits of 2 of its 2 contexts" in html


def test_the_table_numbers_equal_results_json(runs, report):
    _, html = report
    shown = cells(html)
    for label, name in [("seed 0", "knowledge-0"), ("seed 1", "knowledge-1"), ("arc", "arc")]:
        results = json.loads((runs[name] / "results.json").read_text())
        checked = 0
        for condition, row in results["conditions"].items():
            expected = {key: value for key, value in row.items() if key != "vs_reference"}
            if row.get("vs_reference"):
                expected["difference"] = row["vs_reference"]["difference"]
            for cell in (c for c in shown if c.get("data-run") == label and c.get("data-condition") == condition):
                value = expected[cell["data-metric"]]
                assert cell["data-value"] == str(value), (label, condition, cell["data-metric"])
                checked += 1
        assert checked >= 8 * len(results["conditions"]), label
    summary = json.loads((runs["train"] / "round-1" / "summary.json").read_text())
    [reward] = [c for c in shown if c.get("data-metric") == "mean_reward" and c.get("data-round") == "1"]
    assert float(reward["data-value"]) == summary["mean_reward"]
    continual = json.loads((runs["continual"] / "results.json").read_text())
    for condition, result in continual["conditions"].items():
        for name, estimate in result["summary"].items():
            [cell] = [
                c
                for c in shown
                if c.get("data-run") == "continual"
                and c.get("data-condition") == condition
                and c.get("data-metric") == name
            ]
            assert float(cell["data-value"]) == estimate["mean"]


def test_every_image_is_an_embedded_png_that_decodes(report):
    _, html = report
    decoded = images(html)
    assert len(decoded) >= 10
    for image in decoded:
        image.load()
        assert image.format == "PNG" and image.width > 50 and image.height > 50
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch


def test_model_written_text_is_escaped(runs, tmp_path):
    """A self-edit and an answer holding a <script> show as text."""
    run = tmp_path / "run"
    shutil.copytree(runs["knowledge-0"], run)
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    for record in records:
        if record["self_edit"]:
            record["self_edit"]["text"] = SCRIPT
        record["grades"][0]["answer"] = SCRIPT
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "report.html"

    assert main(["report", str(run), "--out", str(out)]) == 0

    html = out.read_text()
    assert SCRIPT not in html
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html


def test_a_report_only_reads_its_runs(runs, tmp_path):
    def snapshot() -> dict[str, str]:
        return {
            str(file): hashlib.sha256(file.read_bytes()).hexdigest()
            for run in runs.values()
            for file in sorted(run.rglob("*"))
            if file.is_file() and not file.name.endswith("-shm")  # SQLite's shared-memory index, which readers map
        }

    before = snapshot()
    assert main(["report", *map(str, runs.values()), "--out", str(tmp_path / "r.html")]) == 0
    assert snapshot() == before


def test_a_serve_run_is_recognised_by_its_ledger_and_the_path_is_printed(runs, tmp_path, capsys):
    served = tmp_path / "assistant"
    shutil.copytree(runs["adapt"] / "ledger", served / "ledger")
    assert main(["report", str(served), "--out", str(tmp_path / "r.html")]) == 0
    assert f"Report written to {tmp_path / 'r.html'}" in capsys.readouterr().out
    html = (tmp_path / "r.html").read_text()
    assert "seal serve" in html and "Water" in html


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such run directory"),
        ("foreign", "is not a seal-lm run directory"),
        ("corrupt", "config.json is corrupt"),
        ("unfinished", "no results.json yet"),
        ("inside", "a report never writes into a run"),
        ("label", "--label"),
    ],
)
def test_a_bad_run_is_one_clear_line(runs, tmp_path, capsys, case, message):
    run, out, extra = tmp_path / "run", tmp_path / "r.html", []
    if case == "foreign":
        run.mkdir()
        (run / "notes.txt").write_text("hello")
    elif case == "corrupt":
        run.mkdir()
        (run / "config.json").write_text("{not json")
    elif case == "unfinished":
        shutil.copytree(runs["knowledge-0"], run)
        (run / "results.json").unlink()
    elif case == "inside":
        run, out = runs["knowledge-0"], runs["knowledge-0"] / "report.html"
    elif case == "label":
        run, extra = runs["knowledge-0"], ["--label", "x=elsewhere"]

    assert main(["report", str(run), "--out", str(out), *extra]) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("seal: error:") and message in errors[0], errors
    assert not out.exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Run after load in a copy of the page: the title becomes how many images decoded, out of how many.
IMAGE_CHECK = (
    "<script>window.addEventListener('load', () => { const all = [...document.images];"
    " document.title = 'decoded ' + all.filter(i => i.complete && i.naturalWidth > 0).length + '/' + all.length; });</script>"
)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
@pytest.mark.parametrize("kind", ["knowledge-0", "train", "continual", "adapt", "arc"])
def test_each_kind_of_page_loads_in_headless_chromium_with_every_image_decoded(runs, tmp_path, kind):
    page = tmp_path / "report.html"
    assert main(["report", str(runs[kind]), "--out", str(page)]) == 0
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", IMAGE_CHECK + "</body>"))

    shown = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    title = re.search(r"<title>(.*?)</title>", shown.stdout)
    count = len(images(page.read_text()))
    assert title and title.group(1) == f"decoded {count}/{count}", (title, shown.stderr[-2000:])
    assert count > 0
    assert "CONSOLE" not in shown.stderr and "Uncaught" not in shown.stderr, shown.stderr[-2000:]
