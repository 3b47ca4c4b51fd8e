"""``seal adapt``, ``seal ledger``, ``seal rollback`` and ``seal eval continual`` end to end on the tiny model:
every stream format and bad file, resume, rollback to exact weights, signals, and the forgetting matrix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_RUN

from seal_lm.cli import main
from seal_lm.continual.ledger import Ledger
from seal_lm.loops.continual import ContinualLearner
from seal_lm.model.loading import load_model

TINY = [
    *TINY_RUN,
    "--probe-max-tokens",
    "24",
]
RECORDS = [
    {
        "title": "Eiffel Tower",
        "text": "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
        "questions": [{"question": "Where is the Eiffel Tower?", "answer": "Paris"}],
    },
    {"title": "Mongol Empire", "text": "Genghis Khan founded the Mongol Empire. The Shah fled rather than surrender."},
    {
        "title": "Water",
        "context": "Water boils at 100 degrees at sea level.",
        "questions": [{"question": "At what temperature does water boil?", "answers": ["100 degrees", "100"]}],
    },
]
SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Moon",
            "paragraphs": [
                {
                    "context": "Neil Armstrong walked on the Moon in 1969.",
                    "qas": [
                        {"id": "m1", "question": "Who walked on the Moon?", "answers": [{"text": "Neil Armstrong"}]}
                    ],
                }
            ],
        }
    ],
}


def jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def adapt_args(model_dir, stream, out, *extra) -> list[str]:
    return ["adapt", "--model", str(model_dir), "--stream", str(stream), "--out", str(out), *TINY, *extra]


def decisions(out: Path) -> list[tuple[str, str, int | None]]:
    with Ledger.open(out / "ledger", readonly=True) as ledger:
        return [
            (u.record.decision, Path(u.record.document_path).name, u.record.document_index) for u in ledger.updates()
        ]


def model_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_model(str(folder)).model.state_dict()


# ---------------------------------------------------------------------------------------------
# seal adapt
# ---------------------------------------------------------------------------------------------


def test_adapt_learns_each_format_reports_bad_files_and_resumes(tmp_path, tiny_model_dir, capsys):
    stream, out = tmp_path / "stream", tmp_path / "run"
    stream.mkdir()
    (stream / "a.jsonl").write_text(jsonl(RECORDS[:2]) + "{not json\n")
    (stream / "b.md").write_text("# Water\n\nWater boils at 100 degrees at sea level.\n")
    (stream / "c.csv").write_text("not,a,document\n")
    (stream / "d.json").write_text(json.dumps(SQUAD))
    (stream / "e.txt").write_bytes(b"caf\xe9 latin-1 text\n")

    assert main(adapt_args(tiny_model_dir, stream, out)) == 0

    printed = capsys.readouterr().out
    assert decisions(out) == [
        ("initial", "", None),
        ("accepted", "a.jsonl", 0),
        ("accepted", "a.jsonl", 1),
        ("accepted", "b.md", 0),
        ("accepted", "d.json", 0),
    ]
    errors = [json.loads(line) for line in (out / "stream_errors.jsonl").read_text().splitlines()]
    assert [(Path(e["location"]).name, e["message"].split(" (")[0]) for e in errors] == [
        ("a.jsonl#2", "not valid JSON"),
        ("c.csv", "unsupported file type '.csv'; expected one of .json, .jsonl, .txt, .md, .markdown."),
        ("e.txt", "not UTF-8 text"),
    ]
    assert printed.count("skipped ") == 3 and "Done: 4 accepted, 3 unreadable; current version 5." in printed
    assert printed.rstrip().endswith(f"See it at a glance: seal report {out} --out {out.name}.html")

    assert main(adapt_args(tiny_model_dir, stream, out)) == 0  # nothing new: nothing redone, errors not recorded twice
    assert "Done: 3 unreadable; current version 5." in capsys.readouterr().out
    assert len(decisions(out)) == 5 and len((out / "stream_errors.jsonl").read_text().splitlines()) == 3

    with open(stream / "a.jsonl", "a") as f:
        f.write(jsonl(RECORDS[2:]))
    assert main(adapt_args(tiny_model_dir, stream, out)) == 0
    assert decisions(out)[5:] == [("accepted", "a.jsonl", 3)]


def test_adapt_says_when_an_update_taught_nothing_measurable_and_logs_every_phase(
    tmp_path, tiny_model_dir, capsys, caplog
):
    """Two Markdown notes, cloze probes: the random tiny model answers none of them before or after."""
    stream, out = tmp_path / "notes", tmp_path / "run"
    stream.mkdir()
    (stream / "a.md").write_text(
        "# Tower\n\nThe Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.\n"
    )
    (stream / "b.md").write_text(
        "# Empire\n\nGenghis Khan founded the Mongol Empire. The Shah fled rather than surrender.\n"
    )
    caplog.set_level("INFO", logger="seal_lm.loops.continual")

    assert main(adapt_args(tiny_model_dir, stream, out, "--probes", "cloze")) == 0

    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("accepted")]
    assert len(lines) == 2 and all("probes 0.00 → 0.00" in line and "no measurable gain" in line for line in lines), (
        lines
    )
    with Ledger.open(out / "ledger", readonly=True) as ledger:
        assert all(u.record.reason.startswith("no measurable gain on the new document") for u in ledger.updates()[1:])
    phases = [r.getMessage() for r in caplog.records if r.name == "seal_lm.loops.continual"]
    for title in ("Tower", "Empire"):
        mine = [message.split(": ", 1)[1] for message in phases if message.startswith(f"{title!r}: ")]
        assert [message.split(" ")[0] for message in mine] == [
            "finding",
            "answering",
            "writing",
            "training",
            "merging",
        ], mine

    assert main(adapt_args(tiny_model_dir, stream, tmp_path / "strict", "--probes", "cloze", "--min-gain", "0.01")) == 0
    assert capsys.readouterr().out.count("rejected: ") == 2


def test_adapt_refuses_other_settings_in_the_same_out_but_takes_another_stream(tmp_path, tiny_model_dir, capsys):
    first, second, out = tmp_path / "first.jsonl", tmp_path / "second.jsonl", tmp_path / "run"
    first.write_text(jsonl(RECORDS[:1]))
    second.write_text(jsonl(RECORDS[2:]))
    assert main(adapt_args(tiny_model_dir, first, out)) == 0
    capsys.readouterr()

    assert main(adapt_args(tiny_model_dir, first, out, "--lora-rank", "8")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("seal: error:") and "lora_rank" in err[0]

    assert main(adapt_args(tiny_model_dir, second, out)) == 0
    assert [d[1] for d in decisions(out)] == ["", "first.jsonl", "second.jsonl"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stream", ""], "--stream is required"),
        (["--stream", "{missing}/*.jsonl"], "no such file, or no files match"),
        (["--commit", "squash"], "Unknown --commit 'squash'"),
        (["--on-forgetting", "ignore"], "Unknown --on-forgetting 'ignore'"),
        (["--probes", "oracle"], "Unknown --probes 'oracle'"),
    ],
)
def test_adapt_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, tiny_model_dir, capsys, args, message):
    stream = tmp_path / "docs.jsonl"
    stream.write_text(jsonl(RECORDS[:1]))
    argv = adapt_args(tiny_model_dir, stream, tmp_path / "run") + [a.format(missing=tmp_path / "none") for a in args]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("seal: error:") and message in err[0]
    assert not (tmp_path / "run").exists()


def test_adapt_has_no_data_or_engine_flags(capsys):
    for flag in ("--data", "--engine"):
        with pytest.raises(SystemExit):
            main(["adapt", "--stream", "docs.jsonl", flag, "x"])
        assert f"unrecognized arguments: {flag}" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# seal ledger, seal rollback
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def adapted(tmp_path, tiny_model_dir):
    """A run that learned one document, its version exported while current, then learned a second."""
    stream, out = tmp_path / "docs.jsonl", tmp_path / "run"
    stream.write_text(jsonl(RECORDS[:1]))
    assert main(adapt_args(tiny_model_dir, stream, out)) == 0
    assert main(["ledger", "export", "--run", str(out), "--to", str(tmp_path / "v2-when-current")]) == 0
    stream.write_text(jsonl(RECORDS[:1] + RECORDS[2:]))
    assert main(adapt_args(tiny_model_dir, stream, out)) == 0
    return {"out": out, "stream": stream, "v2": tmp_path / "v2-when-current"}


def test_ledger_list_show_and_diff(adapted, capsys):
    run = str(adapted["out"])
    capsys.readouterr()

    assert main(["ledger", "list", "--run", run]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:3] == ["update", "version", "decision"]
    assert [line.split()[:3] for line in listed[1:4]] == [
        ["1", "1", "initial"],
        ["2", "2", "accepted"],
        ["3", "3*", "accepted"],
    ]
    assert "'Water'" in listed[3] and listed[-1] == "current version: 3 (* above)"

    assert main(["ledger", "show", "2", "--run", run + "/ledger"]) == 0  # the ledger folder itself works too
    shown = capsys.readouterr().out
    assert shown.startswith("version 2, parent 1,") and "update 2: accepted" in shown
    assert "probes (gold)" in shown and "Where is the Eiffel Tower?  [Paris]" in shown and '"train_sequences"' in shown

    assert main(["ledger", "diff", "1", "3", "--run", run]) == 0
    diffed = capsys.readouterr().out
    assert diffed.startswith("version 1 → 3: 4 of 4 stored tensors differ") and "q_proj.weight" in diffed
    assert "updates between: 2" in diffed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ledger", "show", "9"], "no version 9"),
        (["ledger", "show", "two"], "VERSION: expected int, got 'two'"),
        (["ledger", "list", "--run", ""], "--run is required"),
        (["ledger", "list", "--run", "{tmp}/nowhere"], "no ledger here"),
        (["ledger", "export", "--to", ""], "--to is required"),
        (["ledger", "export", "--to", "{out}"], "is not an empty folder"),
        (["rollback", "3"], "version 3 is already current"),
    ],
)
def test_ledger_and_rollback_errors_are_one_line(adapted, tmp_path, capsys, argv, message):
    run = ["--run", str(adapted["out"])] if "--run" not in argv else []
    argv = [a.format(tmp=tmp_path, out=adapted["out"]) for a in argv] + run
    capsys.readouterr()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("seal: error:") and message in err[0]


def test_rollback_restores_the_exact_weights_a_version_had_when_current(adapted, tmp_path, tiny_model_dir, capsys):
    out = adapted["out"]
    assert main(["ledger", "export", "--run", str(out), "--to", str(tmp_path / "v3")]) == 0

    assert main(["rollback", "2", "--run", str(out), "--reason", "water was wrong"]) == 0
    assert main(["ledger", "export", "--run", str(out), "--to", str(tmp_path / "v2-after-rollback")]) == 0

    when_current, restored, later = (
        model_weights(tmp_path / name) for name in ("v2-when-current", "v2-after-rollback", "v3")
    )
    assert when_current.keys() == restored.keys()
    assert all(torch.equal(when_current[name], restored[name]) for name in when_current)
    assert not all(torch.equal(when_current[name], later[name]) for name in when_current)
    capsys.readouterr()
    assert main(["ledger", "list", "--run", str(out)]) == 0
    assert "version 3 → 2 (water was wrong)" in capsys.readouterr().out

    assert main(adapt_args(tiny_model_dir, adapted["stream"], out)) == 0  # resumes from version 2; nothing new to learn
    assert "Starting from version 2" in capsys.readouterr().out


def test_a_version_whose_weights_file_is_gone_is_marked_broken_and_rollback_refuses_it(adapted, capsys):
    run = str(adapted["out"])
    with Ledger.open(adapted["out"] / "ledger", readonly=True) as ledger:
        ledger.get(2).file.unlink()
    capsys.readouterr()

    assert main(["ledger", "list", "--run", run]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in listed[1:4]] == [
        ["1", "1", "initial"],
        ["2", "!2", "accepted"],
        ["3", "3*", "accepted"],
    ]
    assert any(
        line.startswith("version 2 is broken (! above): weights file ") and "is missing" in line for line in listed
    )
    assert main(["ledger", "show", "2", "--run", run]) == 0
    assert "BROKEN: weights file " in capsys.readouterr().out

    assert main(["rollback", "2", "--run", run]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "cannot roll back to version 2: weights file" in err[0] and "is missing" in err[0]
    with Ledger.open(adapted["out"] / "ledger", readonly=True) as ledger:
        assert ledger.current().id == 3


def test_a_corrupt_ledger_database_is_one_line_for_every_command(tmp_path, capsys):
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "ledger.sqlite").write_bytes(b"not sqlite at all " * 300)
    for command in (["ledger", "list"], ["ledger", "show", "1"], ["rollback", "1"]):
        assert main([*command, "--run", str(tmp_path)]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "is not a ledger database or is damaged" in err[0], (command, err)


def test_rollback_is_refused_while_seal_adapt_holds_the_ledger(adapted, capsys):
    with Ledger.open(adapted["out"] / "ledger"):  # as a running seal adapt does
        assert main(["rollback", "2", "--run", str(adapted["out"])]) == 2
    assert "already open for writing" in capsys.readouterr().err
    with Ledger.open(adapted["out"] / "ledger", readonly=True) as ledger:
        assert ledger.current().id == 3


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_follow_run_leaves_the_ledger_consistent_and_resumes(tmp_path, tiny_model_dir, stop):
    """SIGTERM: the current document is finished, then a clean exit. kill -9: the last commit stands."""
    stream, out = tmp_path / "stream", tmp_path / "run"
    stream.mkdir()
    (stream / "docs.jsonl").write_text(jsonl(RECORDS))
    argv = adapt_args(tiny_model_dir, stream, out, "--on-forgetting", "accept")
    script = (
        f"import sys; from seal_lm.cli import main; sys.exit(main({argv + ['--follow', '--poll-interval', '0.2']!r}))"
    )
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    try:
        for line in process.stdout:
            if line.startswith("accepted"):
                break
        process.send_signal(stop)
        printed, err = process.communicate(timeout=120)
    finally:
        process.kill()

    if stop == signal.SIGTERM:
        assert process.returncode == 0, err
        assert "Stopped by SIGTERM after the current document" in printed
    else:
        assert process.returncode == -signal.SIGKILL
    with Ledger.open(out / "ledger") as ledger:  # the lock went with the process; leftovers of a cut commit are removed
        versions = ledger.versions()
        assert ledger.current().id == versions[-1].id and len(versions) >= 2
        for version in versions:
            ledger.load_weights(version.id)  # present, and matching its recorded hash
        committed = {u.record.document_id for u in ledger.updates() if u.version and u.record.document_id}
        assert ledger.decided_documents() == committed
    assert main(argv) == 0
    assert [d[0] for d in decisions(out)] == ["initial", "accepted", "accepted", "accepted"]


# ---------------------------------------------------------------------------------------------
# seal eval continual
# ---------------------------------------------------------------------------------------------


PASSAGES = [
    {
        "title": r["title"],
        "context": r.get("text", r.get("context")),
        "questions": r.get("questions") or [{"question": "Who fled?", "answer": "The Shah"}],
    }
    for r in RECORDS
]


def eval_args(model_dir, data, out, *extra) -> list[str]:
    return [
        "eval",
        "continual",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--n-passages",
        "2",
        "--sequences",
        "2",
        "--guard",
        "--retention-tolerance",
        "0",
        *TINY,
        *extra,
    ]


def test_eval_continual_writes_the_accuracy_matrices_summaries_and_heatmap_and_resumes(
    tmp_path, tiny_model_dir, monkeypatch
):
    data, out = tmp_path / "passages.json", tmp_path / "run"
    data.write_text(json.dumps(PASSAGES))
    learn = ContinualLearner.learn
    calls = []

    def interrupted_on_the_fifth(self, *args, **kwargs):
        calls.append(args[0].id)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return learn(self, *args, **kwargs)

    monkeypatch.setattr(ContinualLearner, "learn", interrupted_on_the_fifth)
    assert main(eval_args(tiny_model_dir, data, out)) == 130
    first_lines = (out / "records.jsonl").read_text().splitlines()
    assert len(first_lines) == 2 + 4  # before rows of both sequences, and four steps
    assert not (out / "results.json").exists()

    calls.clear()
    assert main(eval_args(tiny_model_dir, data, out)) == 0
    assert len(calls) == 4  # only the steps not yet measured
    lines = (out / "records.jsonl").read_text().splitlines()
    assert lines[:6] == first_lines and len(lines) == 2 + 2 * 2 * 2
    records = {json.loads(line)["unit"]: json.loads(line) for line in lines}

    results = json.loads((out / "results.json").read_text())
    assert (results["sequences"], results["passages_per_sequence"]) == (2, 2)
    assert results["before"] == [records[f"before/{s}"]["accuracy"] for s in range(2)]
    for condition in ("naive", "guarded"):
        result = results["conditions"][condition]
        assert result["matrices"] == [[records[f"{condition}/{s}/{i}"]["accuracy"] for i in range(2)] for s in range(2)]
        assert set(result["summary"]) == {"average_accuracy", "backward_transfer", "forgetting"}
        assert all(
            result["summary"][name]["n"] == 2 and result["summary"][name]["stderr"] is not None
            for name in result["summary"]
        )
        assert result["mean_matrix"][0][1] is None and len(result["mean_matrix"]) == 2
    assert results["conditions"]["naive"]["decisions"] == {"accepted": 4}
    assert sum(results["conditions"]["guarded"]["decisions"].values()) == 4
    assert (out / "forgetting.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    table = (out / "results.md").read_text()
    assert table.startswith("| condition | average accuracy |") and "| naive |" in table and "| guarded |" in table
    assert sorted(p.name for p in (out / "ledgers").iterdir()) == ["guarded-0", "guarded-1", "naive-0", "naive-1"]


def test_eval_continual_needs_enough_passages(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "passages.json"
    data.write_text(json.dumps(PASSAGES))
    assert main(eval_args(tiny_model_dir, data, tmp_path / "run", "--n-passages", "5")) == 2
    assert "--n-passages must be between 2 and the 3 passages of --data, got 5" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
