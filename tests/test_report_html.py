"""``seal report`` on real runs of every kind, made on the tiny random model: the page's numbers are
results.json's, model-written text is escaped, every image decodes (in Python, and in headless
Chromium when it is installed), and the run directories are only read."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import TINY_RUN
from PIL import Image

from seal_lm.cli import main
from seal_lm.domains.arc.config import TTTConfig
from seal_lm.domains.knowledge.grading import LLMJudge
from seal_lm.report.self_edits import copied_share

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


def even_length_judge(self, question, golds, prediction) -> bool:
    """A stand-in for the LLM judge's endpoint: "yes" to an answer of an even number of characters."""
    return len(prediction) % 2 == 0


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_model_dir) -> tuple[dict[str, Path], dict[str, tuple[str, str]]]:
    """One run of each kind (two of eval knowledge, the second judged), made by the seal command on the tiny
    model, and what each command printed (stdout, stderr)."""
    root = tmp_path_factory.mktemp("report-runs")
    printed = {}

    def seal(name: str, args: list[str]) -> None:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            assert main(args) == 0, stderr.getvalue()[-2000:]
        printed[name] = (stdout.getvalue(), stderr.getvalue())

    data = root / "passages.json"
    data.write_text(json.dumps(PASSAGES))
    model = ["--model", str(tiny_model_dir)]
    made = {name: root / name for name in ("knowledge-0", "knowledge-1", "train", "continual", "adapt", "arc")}
    for seed in (0, 1):
        judged = ["--judge-url", "http://127.0.0.1:9/v1"] if seed == 1 else []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(LLMJudge, "__call__", even_length_judge)
            seal(
                f"knowledge-{seed}",
                ["eval", "knowledge", *model, "--data", str(data), "--out", str(made[f"knowledge-{seed}"])]
                + f"--conditions base,passage,self-edit --k 2 --bootstrap-samples 100 --seed {seed}".split()
                + [*judged, *TINY],
            )
    seal(
        "train",
        ["train", "knowledge", *model, "--data", str(data), "--out", str(made["train"])]
        + "--rounds 2 --contexts-per-round 2 --k 2 --keep-rule threshold --keep-threshold 0".split()
        + "--policy-rank 4 --policy-alpha 8 --policy-epochs 1".split()
        + TINY,
    )
    seal(
        "continual",
        ["eval", "continual", *model, "--data", str(data), "--out", str(made["continual"])]
        + "--n-passages 2 --sequences 2 --guard --probe-max-tokens 24".split()
        + TINY,
    )
    stream = root / "stream.jsonl"
    stream.write_text(
        "".join(
            json.dumps({"title": p["title"], "text": p["context"], "questions": p["questions"]}) + "\n"
            for p in PASSAGES
        )
    )
    seal(
        "adapt",
        ["adapt", *model, "--stream", str(stream), "--out", str(made["adapt"]), "--probe-max-tokens", "24", *TINY],
    )
    assert main(["rollback", "2", "--run", str(made["adapt"]), "--reason", "testing the timeline"]) == 0
    (root / "task.json").write_text(json.dumps(TASK))
    seal(
        "arc",
        ["eval", "arc", "--tasks", str(root / "task.json"), *model, "--out", str(made["arc"])]
        + "--k 2 --views 2 --max-examples 4 --lora-rank 4 --lora-alpha 8 --self-edit-max-tokens 16".split()
        + ["--bootstrap-samples", "50", "--oracle-config", TTTConfig(learning_rate=1e-3, epochs=1).to_json()],
    )
    return made, printed


@pytest.fixture(scope="module")
def runs(made) -> dict[str, Path]:
    return made[0]


@pytest.fixture(scope="module")
def printed(made) -> dict[str, tuple[str, str]]:
    """What each command printed: (stdout, stderr)."""
    return made[1]


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> tuple[Path, str]:
    """The report of every run, written by ``seal report``, and its text."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    labels = f"seed 0={runs['knowledge-0']},seed 1={runs['knowledge-1']}"
    assert main(["report", *map(str, runs.values()), "--out", str(out), "--label", labels]) == 0
    return out, out.read_text(encoding="utf-8")


class Tagged(HTMLParser):
    """The attributes of every element carrying the attribute ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.found: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if self.name in attributes:
            self.found.append(attributes)


def tagged(html: str, name: str) -> list[dict[str, str]]:
    parser = Tagged(name)
    parser.feed(html)
    return parser.found


def cells(html: str) -> list[dict[str, str]]:
    """The report's table numbers: the elements carrying ``data-value``."""
    return tagged(html, "data-value")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


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


@pytest.mark.parametrize("name", ["knowledge-0", "arc"])
def test_an_evaluation_still_running_shows_the_table_of_its_units_so_far(runs, tmp_path, name):
    """Without results.json the table is made from the records by the function that writes results.json:
    with every unit recorded it equals results.json; with some, it is marked in progress."""
    run = tmp_path / "run"
    shutil.copytree(runs[name], run)
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").unlink()
    assert main(["report", str(run), "--out", str(tmp_path / "all.html"), "--label", f"x={run}"]) == 0
    shown = [c for c in cells((tmp_path / "all.html").read_text()) if c.get("data-run") == "x"]
    accuracies = {c["data-condition"]: c["data-value"] for c in shown if c.get("data-metric") == "accuracy"}
    assert accuracies == {condition: str(row["accuracy"]) for condition, row in results["conditions"].items()}

    records = (run / "records.jsonl").read_text().splitlines()
    (run / "records.jsonl").write_text("\n".join(records[:2]) + "\n")
    assert main(["report", str(run), "--out", str(tmp_path / "some.html")]) == 0
    assert 'data-in-progress="2"' in (tmp_path / "some.html").read_text()


def test_the_train_page_shows_how_the_self_edits_changed_as_their_records_say(runs, report):
    """Per round, all and kept: mean words, non-blank lines and share of word 5-grams found in the prompt."""
    _, html = report
    shown = {(c["data-round"], c["data-metric"], c["data-group"]): c["data-value"] for c in tagged(html, "data-group")}
    assert len(shown) == 2 * 3 * 2  # rounds x measures x (all, kept)
    for number in (1, 2):
        samples = read_jsonl(runs["train"] / f"round-{number}" / "samples.jsonl")
        groups = {
            "all": [(s["text"], r["prompt"]) for r in samples for s in r["samples"]],
            "kept": [(r["samples"][i]["text"], r["prompt"]) for r in samples for i in r["kept"]],
        }
        for group, edits in groups.items():
            written = [(text, prompt) for text, prompt in edits if text.strip()]
            expected = {
                "words": statistics.fmean(len(text.split()) for text, _ in edits) if edits else None,
                "lines": statistics.fmean(sum(1 for x in text.splitlines() if x.strip()) for text, _ in edits)
                if edits
                else None,
                "copied": statistics.fmean(copied_share(text, prompt) for text, prompt in written) if written else None,
            }
            for metric, value in expected.items():
                assert shown[str(number), metric, group] == str(value), (number, metric, group)


def test_a_self_edit_that_copies_its_passage_shows_as_copied(runs, tmp_path):
    """Round 1's first self-edits copy a sentence of their passage, the others are the model's own words."""
    run = tmp_path / "train"
    shutil.copytree(runs["train"], run)
    samples = read_jsonl(run / "round-1" / "samples.jsonl")
    copied = {p["title"]: p["context"].split(". ")[0] for p in PASSAGES}
    for record in samples:
        [title] = [title for title in copied if title in record["prompt"]]
        record["samples"][0]["text"] = copied[title]
        for sample in record["samples"][1:]:
            sample["text"] = "an unusual sentence of words that no passage here holds"
    (run / "round-1" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    out = tmp_path / "report.html"

    assert main(["report", str(run), "--out", str(out)]) == 0

    shown = {
        (c["data-round"], c["data-group"]): c
        for c in tagged(out.read_text(), "data-group")
        if c["data-metric"] == "copied"
    }
    share = len(samples) / sum(len(r["samples"]) for r in samples)  # one self-edit of each context copies
    assert float(shown["1", "all"]["data-value"]) == pytest.approx(share)


def test_each_shown_answer_carries_the_judges_verdict_when_the_run_has_them(runs, report):
    _, html = report
    verdicts = {(v["unit"], v["question"]): v["judge"] for v in read_jsonl(runs["knowledge-1"] / "judgements.jsonl")}
    badges = tagged(html, "data-judge")
    judged = [badge for badge in badges if badge["data-run"] == "seed 1"]
    assert judged and {badge["data-judge"] for badge in judged} <= {"true", "false"}
    for badge in judged:
        assert verdicts[badge["data-unit"], int(badge["data-question"])] is (badge["data-judge"] == "true")
    assert not [badge for badge in badges if badge["data-run"] == "seed 0"]  # a run without a judge shows none


def test_the_arc_page_draws_each_tasks_demonstrations_from_the_run(runs, report):
    _, html = report
    assert read_jsonl(runs["arc"] / "tasks.jsonl") == [{"task": "task", **TASK}]
    assert 'alt="task task: demonstrations and test inputs"' in html
    assert "its 2 demonstrations (input → output)" in html
    assert "not recorded by this run" not in html


def test_an_arc_run_that_did_not_record_its_tasks_says_so_in_one_line(runs, tmp_path):
    run = tmp_path / "arc"
    shutil.copytree(runs["arc"], run)
    (run / "tasks.jsonl").unlink()
    out = tmp_path / "report.html"

    assert main(["report", str(run), "--out", str(out)]) == 0

    html = out.read_text()
    assert html.count("The demonstrations were not recorded by this run") == 1
    assert "demonstrations and test inputs" not in html
    assert 'alt="task task, test input 1"' in html  # the truth beside every configuration's attempts, as before


def test_every_command_ends_with_a_summary_and_the_line_that_reports_it(runs, printed):
    for name in ("knowledge-0", "knowledge-1", "train", "continual", "adapt", "arc"):
        lines = printed[name][0].rstrip().splitlines()
        run = runs[name]
        assert lines[-1] == f"See it at a glance: seal report {run} --out {run.name}.html", name
        assert len(lines) > 2, name  # a summary before it (the table, the rounds, the decisions)


@pytest.mark.parametrize(
    "name, bar",
    [
        ("knowledge-0", r"units: 100%\|[^|]*\| 12/12 \[[0-9:]+<00:00"),  # 3 passages x (base, passage, 2 self-edits)
        ("train", r"round 2: 100%\|[^|]*\| 4/4 \[[0-9:]+<00:00"),  # 2 contexts x k=2 adapters
        ("continual", r"updates: 100%\|[^|]*\| 8/8 \[[0-9:]+<00:00"),  # (naive, guarded) x 2 sequences x 2 passages
        ("adapt", r"documents: 100%\|[^|]*\| 3/3 \[[0-9:]+<00:00"),
        ("arc", r"units: 100%\|[^|]*\| 4/4 \[[0-9:]+<00:00"),  # icl, ttt-oracle, 2 self-edits
    ],
)
def test_each_long_loop_shows_progress_with_an_eta(printed, name, bar):
    """The bar's last state: done, out of the right total, elapsed<remaining."""
    assert re.search(bar, printed[name][1]), printed[name][1][-1500:]


def test_every_image_is_an_embedded_png_that_decodes(report):
    _, html = report
    decoded = images(html)
    assert len(decoded) >= 10
    for image in decoded:
        image.load()
        assert image.format == "PNG" and image.width > 50 and image.height > 50
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch


def test_model_written_text_is_escaped(runs, tmp_path):
    """A self-edit and an answer (judged) holding a <script>, and a ReST-EM round's self-edits, show as text."""
    run, train = tmp_path / "run", tmp_path / "train"
    shutil.copytree(runs["knowledge-1"], run)
    records = read_jsonl(run / "records.jsonl")
    for record in records:
        if record["self_edit"]:
            record["self_edit"]["text"] = SCRIPT
        record["grades"][0]["answer"] = SCRIPT
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    shutil.copytree(runs["train"], train)
    samples = read_jsonl(train / "round-1" / "samples.jsonl")
    for record in samples:
        for sample in record["samples"]:
            sample["text"] = SCRIPT
    (train / "round-1" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    out = tmp_path / "report.html"

    assert main(["report", str(run), str(train), "--out", str(out)]) == 0

    html = out.read_text()
    assert SCRIPT not in html
    escaped = "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"
    assert html.count(escaped) >= len(records) + 2 * len(samples)
    assert "judge: " in html


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
    elif case == "unfinished":  # an evaluation of forgetting has its table only when it ends
        shutil.copytree(runs["continual"], run)
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
@pytest.mark.parametrize(
    "kind, part",
    [
        ("knowledge-1", 'data-judge="'),  # the judge's verdict beside each answer
        ("train", 'data-metric="copied"'),  # how much of the passage the self-edits copied, per round
        ("continual", 'alt="forgetting heatmap"'),
        ("adapt", 'alt="ledger timeline"'),
        ("arc", "demonstrations and test inputs"),  # the task's grids as recorded
    ],
)
def test_each_kind_of_page_loads_in_headless_chromium_with_every_image_decoded(runs, tmp_path, kind, part):
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
    assert part in shown.stdout  # the page as the browser built it
    assert "CONSOLE" not in shown.stderr and "Uncaught" not in shown.stderr, shown.stderr[-2000:]
