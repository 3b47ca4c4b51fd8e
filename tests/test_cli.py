"""Tests for the ``seal`` command line: flags and YAML into configs, and ``seal eval knowledge`` end
to end on the tiny random model (outputs, agreement with a reference SQuAD scorer, resume, interruption, errors)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import TINY_RUN, reference_squad_scores, text_id

import seal_lm.loops.evaluate as evaluate
from seal_lm.adapt.lora import InnerLoop
from seal_lm.cli import build_parser, main
from seal_lm.cli.eval_knowledge import EvalKnowledgeConfig
from seal_lm.cli.options import config_from_args
from seal_lm.domains.knowledge.data import short_id
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.domains.knowledge.grading import JudgeError, LLMJudge, normalize_answer
from seal_lm.runs.rundir import RunDir, RunDirError


def parse(*flags: str) -> EvalKnowledgeConfig:
    """The config of ``seal eval knowledge --data x.json FLAGS`` (--data is required)."""
    return config_from_args(
        EvalKnowledgeConfig, build_parser().parse_args(["eval", "knowledge", "--data", "x.json", *flags])
    )


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


def test_defaults_without_flags():
    config = parse()
    assert config == EvalKnowledgeConfig(data="x.json")
    assert config.conditions == ("base", "passage", "self-edit")


def test_flags_become_typed_config_fields():
    config = parse(
        "--n-passages",
        "3",
        "--conditions",
        "base,passage",
        "--target-modules",
        "all-linear",
        "--lr",
        "5e-4",
        "--data",
        "y.json",
    )
    assert config.n_passages == 3
    assert config.conditions == ("base", "passage")
    assert config.target_modules == ("all-linear",)
    assert config.lr == 5e-4
    assert config.data == "y.json"
    assert config.k == EvalKnowledgeConfig().k  # untouched fields keep their defaults


def test_comma_lists_ignore_spaces_and_empty_items():
    assert parse("--conditions", " base , passage,, ").conditions == ("base", "passage")


def test_yaml_config_values_with_flags_overriding(tmp_path):
    file = tmp_path / "settings.yaml"
    file.write_text("n-passages: 5\nepochs: 3\nconditions: [base, external]\nlr: 0.01\ntarget_modules: q_proj,k_proj\n")

    from_file = parse("--config", str(file))
    assert from_file.n_passages == 5
    assert from_file.epochs == 3
    assert from_file.conditions == ("base", "external")
    assert from_file.lr == 0.01
    assert from_file.target_modules == ("q_proj", "k_proj")

    overridden = parse("--config", str(file), "--epochs", "7", "--conditions", "passage")
    assert overridden.epochs == 7
    assert overridden.conditions == ("passage",)
    assert overridden.n_passages == 5  # still from the file


def test_unknown_yaml_key_is_named(tmp_path):
    file = tmp_path / "settings.yaml"
    file.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        parse("--config", str(file))


def test_missing_yaml_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="nope.yaml"):
        parse("--config", str(tmp_path / "nope.yaml"))


def test_a_bad_number_names_its_flag():
    with pytest.raises(ValueError, match="--n-passages") as caught:
        parse("--n-passages", "three")
    assert "three" in str(caught.value)
    with pytest.raises(ValueError, match="--lr"):
        parse("--lr", "fast")


def test_a_bad_number_in_yaml_names_its_flag(tmp_path):
    file = tmp_path / "settings.yaml"
    file.write_text("epochs: many\n")
    with pytest.raises(ValueError, match="--epochs"):
        parse("--config", str(file))


def test_main_reports_a_bad_flag_value_as_a_user_error(capsys):
    assert main(["eval", "knowledge", "--k", "two"]) == 2
    assert "seal: error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# eval knowledge, end to end on the tiny model
# ---------------------------------------------------------------------------------------------

PASSAGES = [
    {
        "title": "Eiffel Tower",
        "context": "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
        "questions": [
            {"question": "Where is the Eiffel Tower?", "answer": "Paris"},
            {"question": "When was it completed?", "answer": ["1889", "in 1889"]},
        ],
    },
    {
        "title": "Mongol Empire",
        "context": "Genghis Khan founded the Mongol Empire. The Shah fled rather than surrender.",
        "questions": [{"question": "Who founded the Mongol Empire?", "answer": "Genghis Khan"}],
    },
]
P0, P1 = (text_id(p["context"]) for p in PASSAGES)  # the passages' ids
EXTERNAL = [
    {
        "title": "Eiffel Tower",
        "context": PASSAGES[0]["context"],
        "completions": [
            "1. The Eiffel Tower stands in Paris.\n2. The tower was finished in 1889.",
            "Here are the facts:\n- The World's Fair of 1889 had the Eiffel Tower.",
        ],
    },
    {
        "title": "Mongol Empire",
        "context": PASSAGES[1]["context"],
        "completions": ["1. Genghis Khan was the founder of the Mongol Empire.", "Sure:"],  # the 2nd is unusable
    },
]
CONDITIONS = ["base", "passage", "self-edit", "external"]
UNITS = 2 * (1 + 1 + 2 + 2)


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1))
    return path


def eval_args(model_dir, data, out, *extra: str, external=None, conditions=CONDITIONS, k=2) -> list[str]:
    args = [
        "eval",
        "knowledge",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--conditions",
        ",".join(conditions),
        "--k",
        str(k),
        *TINY_RUN,
        "--bootstrap-samples",
        "200",
    ]
    if external is not None:
        args += ["--external", str(external)]
    return args + list(extra)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir):
    """Data and external self-edit files whose gold answers make the base condition score > 0.

    A base-only probe run reveals the tiny model's (deterministic, greedy) answers; the first
    question's gold becomes that exact answer and the second's shares one word with it, so the
    cross-check with the reference scorer compares non-trivial EM and F1.
    """
    folder = tmp_path_factory.mktemp("cli-files")
    probe_data = write_json(folder / "probe.json", PASSAGES)
    assert main(eval_args(tiny_model_dir, probe_data, folder / "probe-run", conditions=["base"], k=1)) == 0
    answers = json.loads((folder / "probe-run" / "predictions" / "base.json").read_text())

    passages = json.loads(json.dumps(PASSAGES))
    first, second = answers[f"{P0[:12]}-q00"], answers[f"{P0[:12]}-q01"]
    if normalize_answer(first):
        passages[0]["questions"][0]["answer"] = [first.upper(), "Paris"]
    if normalize_answer(second):
        passages[0]["questions"][1]["answer"] = ["1889", normalize_answer(second).split()[0] + " extra words"]
    return {
        "data": write_json(folder / "passages.json", passages),
        "external": write_json(folder / "external.json", EXTERNAL),
        "scorable": bool(normalize_answer(first)),
    }


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model_dir, files):
    """One run of all four conditions with k=2 (shared by the output and resume tests)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    args = eval_args(tiny_model_dir, files["data"], out, external=files["external"])
    code = main(args)
    return {"code": code, "out": out, "args": args}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_full_run_writes_every_output(full_run):
    assert full_run["code"] == 0
    out = full_run["out"]
    records = read_jsonl(out / "records.jsonl")
    assert len(records) == UNITS
    assert len({r["unit"] for r in records}) == UNITS
    assert {r["condition"] for r in records} == set(CONDITIONS)
    for name in [
        "config.json",
        "answers.jsonl",
        "self_edits.jsonl",
        "train_sequences.jsonl",
        "squad_gold.json",
        "results.md",
        "results.json",
    ]:
        assert (out / name).is_file(), name
    predictions = sorted(p.name for p in (out / "predictions").iterdir())
    assert predictions == [
        "base.json",
        "external-0.json",
        "external-1.json",
        "passage.json",
        "self-edit-0.json",
        "self-edit-1.json",
    ]
    assert len(read_jsonl(out / "answers.jsonl")) == 6 * 2 + 6 * 1  # each passage's 6 units answer its questions
    assert len(read_jsonl(out / "self_edits.jsonl")) == 2 * 2 * 2  # self-edit and external, 2 passages, k=2
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_results_table_matches_records(full_run):
    out = full_run["out"]
    results = json.loads((out / "results.json").read_text())
    rows = results["conditions"]
    assert list(rows) == CONDITIONS
    for condition in CONDITIONS:
        assert rows[condition]["questions"] == 3
        assert rows[condition]["units"] == (4 if condition in ("self-edit", "external") else 2)
    assert rows["external"]["rejected_self_edits"] == 1  # "Sure:" has no usable lines
    assert "vs_reference" in rows["base"]
    table = (out / "results.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == CONDITIONS


def test_external_self_edits_become_title_prefixed_training_sequences(full_run):
    out = full_run["out"]
    trained = {row["unit"]: row["sequences"] for row in read_jsonl(out / "train_sequences.jsonl")}
    assert trained[f"{P0}/external/0"] == [
        "Eiffel Tower\nThe Eiffel Tower stands in Paris.",
        "Eiffel Tower\nThe tower was finished in 1889.",
        "Eiffel Tower\n" + PASSAGES[0]["context"],
    ]
    assert trained[f"{P0}/passage/0"] == ["Eiffel Tower\n" + PASSAGES[0]["context"]]
    assert f"{P1}/external/1" not in trained  # rejected: nothing trained
    assert f"{P0}/base/0" not in trained


def test_a_reference_scorer_agrees_with_results(full_run, files):
    """Every prediction file with squad_gold.json, scored by torchmetrics' SQuAD metric, matches
    results.json: base and passage directly, self-edit/external as the mean over their k sample files."""
    out = full_run["out"]
    gold = json.loads((out / "squad_gold.json").read_text())
    assert gold["version"] == "1.1"
    rows = json.loads((out / "results.json").read_text())["conditions"]

    base = reference_squad_scores(gold["data"], json.loads((out / "predictions" / "base.json").read_text()))
    assert base["exact_match"] == pytest.approx(100 * rows["base"]["exact_match"], abs=1e-4)
    assert base["f1"] == pytest.approx(100 * rows["base"]["f1"], abs=1e-4)
    if files["scorable"]:  # the gold answers were built from the model's own answers
        assert base["exact_match"] > 0 and base["f1"] > base["exact_match"], base

    for condition, names in [
        ("passage", ["passage"]),
        ("self-edit", ["self-edit-0", "self-edit-1"]),
        ("external", ["external-0", "external-1"]),
    ]:
        scores = [
            reference_squad_scores(gold["data"], json.loads((out / "predictions" / f"{n}.json").read_text()))
            for n in names
        ]
        for metric in ("exact_match", "f1"):
            mean = sum(s[metric] for s in scores) / len(scores)
            assert mean == pytest.approx(100 * rows[condition][metric], abs=1e-4), (condition, metric)


def test_rerun_resumes_without_redoing_anything(full_run, monkeypatch):
    out = full_run["out"]
    before = (out / "records.jsonl").read_bytes()
    calls = []
    original = evaluate._plan_for
    monkeypatch.setattr(evaluate, "_plan_for", lambda *a, **kw: calls.append(a) or original(*a, **kw))

    assert main(full_run["args"]) == 0

    assert calls == []
    assert (out / "records.jsonl").read_bytes() == before
    assert len(read_jsonl(out / "records.jsonl")) == UNITS


def test_a_different_config_in_the_same_out_is_refused(full_run, capsys):
    out = full_run["out"]
    before = (out / "records.jsonl").read_bytes()
    args = list(full_run["args"])
    args[args.index("--epochs") + 1] = "2"

    assert main(args) == 2

    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err_lines) == 1
    assert err_lines[0].startswith("seal: error:")
    assert "epochs" in err_lines[0]
    assert (out / "records.jsonl").read_bytes() == before


def test_interrupted_run_keeps_finished_units_and_resumes(tmp_path, tiny_model_dir, files, monkeypatch, capsys):
    """Ctrl-C on the 3rd unit: exit 130 with 2 units saved; a re-run does the other 10 and leaves
    the first 2 records byte for byte as they were."""
    out = tmp_path / "run"
    args = eval_args(tiny_model_dir, files["data"], out, external=files["external"])
    original = evaluate._plan_for
    calls = []

    def interrupt_on_third(*a, **kw):
        calls.append(a)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*a, **kw)

    monkeypatch.setattr(evaluate, "_plan_for", interrupt_on_third)
    assert main(args) == 130
    assert "resume" in capsys.readouterr().err
    first_lines = (out / "records.jsonl").read_bytes().splitlines(keepends=True)
    assert len(first_lines) == 2
    assert not (out / "results.json").exists()

    calls.clear()
    monkeypatch.setattr(evaluate, "_plan_for", lambda *a, **kw: calls.append(a) or original(*a, **kw))
    assert main(args) == 0
    assert len(calls) == UNITS - 2  # only the unfinished units ran
    lines = (out / "records.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == UNITS
    assert lines[:2] == first_lines
    assert len({json.loads(line)["unit"] for line in lines}) == UNITS
    assert (out / "results.json").is_file()


def test_a_kill_while_an_adapter_trains_keeps_the_samples_already_finished(
    tmp_path, tiny_model_dir, files, monkeypatch
):
    """A context's k adapters train one after another; each is recorded when it is done, so a kill
    during the 2nd loses only the 2nd, and the re-run trains only the adapters not yet recorded."""
    out = tmp_path / "run"
    args = eval_args(tiny_model_dir, files["data"], out, external=files["external"], conditions=["external"], k=2)
    original = InnerLoop.train_adapter
    trained = []

    def killed_on_second(self, plan):
        trained.append(plan)
        if len(trained) == 2:
            raise KeyboardInterrupt
        return original(self, plan)

    monkeypatch.setattr(InnerLoop, "train_adapter", killed_on_second)
    assert main(args) == 130
    first_lines = (out / "records.jsonl").read_bytes().splitlines(keepends=True)
    assert [json.loads(line)["unit"] for line in first_lines] == [f"{P0}/external/0"]

    trained.clear()
    monkeypatch.setattr(InnerLoop, "train_adapter", lambda self, plan: trained.append(plan) or original(self, plan))
    assert main(args) == 0
    assert len(trained) == 2  # passage 0's 2nd sample and passage 1's usable one (its 2nd self-edit is rejected)
    lines = (out / "records.jsonl").read_bytes().splitlines(keepends=True)
    assert lines[0] == first_lines[0]
    assert sorted(json.loads(line)["unit"] for line in lines) == sorted(
        f"{p}/external/{s}" for p in (P0, P1) for s in (0, 1)
    )


def test_the_run_directory_is_held_for_the_whole_run_and_released_after(tmp_path, tiny_model_dir, files, monkeypatch):
    out = tmp_path / "run"
    original = evaluate._plan_for
    refusals = []

    def second_opener_meanwhile(*a, **kw):
        with pytest.raises(RunDirError) as caught:
            RunDir.open(out, {"another": "run"})
        refusals.append(str(caught.value))
        return original(*a, **kw)

    monkeypatch.setattr(evaluate, "_plan_for", second_opener_meanwhile)
    assert main(eval_args(tiny_model_dir, files["data"], out, conditions=["base"], k=1)) == 0

    assert len(refusals) == 2 and all(f"open for writing by another process (pid {os.getpid()})" in r for r in refusals)
    with pytest.raises(RunDirError, match="different configuration"):  # no longer held: only the config differs
        RunDir.open(out, {"another": "run"})


def test_a_diverging_adapter_is_recorded_with_its_reason_and_the_run_goes_on(tmp_path, tiny_model_dir, files):
    """float16 weights and --lr 1e9: every adapter's loss overflows; each record says so, answers are empty, the run finishes."""
    out = tmp_path / "run"
    args = eval_args(
        tiny_model_dir,
        files["data"],
        out,
        "--dtype",
        "float16",
        "--lr",
        "1e9",
        "--epochs",
        "5",
        conditions=["passage"],
        k=1,
    )
    assert main(args) == 0
    records = read_jsonl(out / "records.jsonl")
    assert len(records) == 2
    for record in records:
        assert (
            record["train"]["stopped"].startswith("training diverged")
            and "learning rate 1e+09" in record["train"]["stopped"]
        )
        assert all(grade["answer"] == "" for grade in record["grades"])
    assert (out / "results.json").is_file()


def test_missing_data_file_is_a_user_error(tmp_path, tiny_model_dir, capsys):
    missing = tmp_path / "no-such-passages.json"
    assert main(eval_args(tiny_model_dir, missing, tmp_path / "run", conditions=["base"], k=1)) == 2
    err = capsys.readouterr().err
    assert err.startswith("seal: error:")
    assert str(missing) in err


def test_external_condition_needs_an_external_file(tmp_path, tiny_model_dir, files, capsys):
    assert main(eval_args(tiny_model_dir, files["data"], tmp_path / "run", conditions=["base", "external"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("seal: error:")
    assert "--external" in err


def test_a_passage_missing_from_the_external_file_is_named(tmp_path, tiny_model_dir, files, capsys):
    partial = write_json(tmp_path / "external.json", EXTERNAL[:1])
    args = eval_args(tiny_model_dir, files["data"], tmp_path / "run", conditions=["external"], external=partial)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("seal: error:")
    assert "Mongol Empire" in err and short_id(P1) in err and P1 not in err
    assert "Eiffel" not in err


def test_an_unknown_condition_is_a_user_error(tmp_path, tiny_model_dir, files, capsys):
    assert main(eval_args(tiny_model_dir, files["data"], tmp_path / "run", conditions=["base", "magic"], k=1)) == 2
    assert "magic" in capsys.readouterr().err


def test_too_few_external_self_edits_for_k_is_a_user_error(tmp_path, tiny_model_dir, files, capsys):
    args = eval_args(
        tiny_model_dir, files["data"], tmp_path / "run", conditions=["external"], k=3, external=files["external"]
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("seal: error:")
    assert "--k" in err


def test_out_naming_an_existing_file_is_a_user_error(tmp_path, tiny_model_dir, files, capsys):
    """Expected: exit 2 with a one-line message, not a NotADirectoryError traceback."""
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("keep me")
    assert main(eval_args(tiny_model_dir, files["data"], not_a_folder, conditions=["base"], k=1)) == 2
    assert capsys.readouterr().err.startswith("seal: error:")
    assert not_a_folder.read_text() == "keep me"


def test_a_repeated_condition_does_not_record_units_twice(tmp_path, tiny_model_dir, files):
    """``--conditions base,base`` must either be refused or run each unit once (not append duplicates)."""
    out = tmp_path / "run"
    code = main(eval_args(tiny_model_dir, files["data"], out, conditions=["base", "base"], k=1))
    assert code in (0, 2)
    if code == 0:
        units = [r["unit"] for r in read_jsonl(out / "records.jsonl")]
        assert sorted(units) == sorted([f"{P0}/base/0", f"{P1}/base/0"])


def test_passages_with_the_same_prompt_draw_different_self_edits(tmp_path, tiny_model_dir, monkeypatch):
    """Each passage samples its self-edits with its own seed; with one seed for all, passages whose
    prompts are alike would draw the same samples, and their results would not be independent."""
    monkeypatch.setattr(KnowledgeDomain, "self_edit_prompt", lambda self, passage: "List facts about the passage.")
    data = write_json(tmp_path / "two.json", PASSAGES)
    assert main(eval_args(tiny_model_dir, data, tmp_path / "run", conditions=["self-edit"], k=2)) == 0
    texts = {}
    for record in read_jsonl(tmp_path / "run" / "records.jsonl"):
        texts.setdefault(record["context_id"], []).append(record["self_edit"]["text"])
    assert len(texts) == 2
    first, second = texts.values()
    assert first != second


def test_a_data_file_holding_a_passage_twice_is_refused_before_any_work(tmp_path, tiny_model_dir, capsys):
    data = write_json(tmp_path / "twins.json", [PASSAGES[0], PASSAGES[1], PASSAGES[0]])
    assert main(eval_args(tiny_model_dir, data, tmp_path / "run", conditions=["base"], k=1)) == 2
    assert capsys.readouterr().err.strip() == (
        f"seal: error: {data}: record 2 repeats the passage of record 0; remove one of them."
    )
    assert not (tmp_path / "run").exists()


def test_a_negative_passage_count_is_refused(tmp_path, tiny_model_dir, files, capsys):
    """``--n-passages -1`` must not silently mean "all but the last passage"."""
    assert (
        main(eval_args(tiny_model_dir, files["data"], tmp_path / "run", "--n-passages", "-1", conditions=["base"], k=1))
        == 2
    )
    err = capsys.readouterr().err
    assert "n-passages" in err or "n_passages" in err


# ---------------------------------------------------------------------------------------------
# The LLM judge runs after the records, in its own resumable pass
# ---------------------------------------------------------------------------------------------


def judge_that_fails_after(answers: int, calls: list):
    """A stand-in for the judge endpoint: "yes" to the first ``answers`` answers, then out of reach (retries spent)."""

    def judge(self, question, golds, prediction):
        calls.append(question)
        if len(calls) > answers:
            raise JudgeError(f"judge endpoint {self.url} gave no answer in 4 attempt(s) (last: connection refused).")
        return True

    return judge


def test_a_failing_judge_keeps_the_trained_records_and_a_rerun_judges_only_the_rest(
    tmp_path, tiny_model_dir, files, monkeypatch, capsys
):
    out = tmp_path / "run"
    args = eval_args(
        tiny_model_dir, files["data"], out, "--judge-url", "http://127.0.0.1:9/v1", conditions=["base", "passage"], k=1
    )
    answers = 2 * 3  # 2 conditions x 3 questions
    calls = []
    monkeypatch.setattr(LLMJudge, "__call__", judge_that_fails_after(2, calls))

    assert main(args) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("seal: error:")]
    assert len(errors) == 1
    assert "judge endpoint" in errors[0] and "re-run the same command" in errors[0]
    assert len(read_jsonl(out / "records.jsonl")) == 4  # every trained unit is kept
    first_verdicts = (out / "judgements.jsonl").read_bytes()
    assert [v["judge"] for v in read_jsonl(out / "judgements.jsonl")] == [True, True]
    results = json.loads((out / "results.json").read_text())
    assert all(row["judge_accuracy"] is None for row in results["conditions"].values())  # no half-judged column

    calls.clear()
    trained = []
    original = evaluate._plan_for
    monkeypatch.setattr(evaluate, "_plan_for", lambda *a, **kw: trained.append(a) or original(*a, **kw))
    monkeypatch.setattr(LLMJudge, "__call__", judge_that_fails_after(answers, calls))

    assert main(args) == 0

    assert trained == []
    assert len(calls) == answers - 2  # only the answers without a verdict
    verdicts = read_jsonl(out / "judgements.jsonl")
    assert (out / "judgements.jsonl").read_bytes().startswith(first_verdicts)
    assert len({(v["unit"], v["question"]) for v in verdicts}) == answers == len(verdicts)
    results = json.loads((out / "results.json").read_text())
    assert all(row["judge_accuracy"] == 1.0 for row in results["conditions"].values())
    assert all(answer["judge"] is True for answer in read_jsonl(out / "answers.jsonl"))


def test_external_self_edits_reach_worker_processes(tmp_path, tiny_model_dir, files, keep_threads):
    """The external lookup is pickled to each worker process (a lambda there crashed the run)."""
    out = tmp_path / "run"
    args = eval_args(
        tiny_model_dir,
        files["data"],
        out,
        "--executor",
        "processes",
        "--workers",
        "2",
        "--threads",
        "2",
        conditions=["external"],
        k=1,
        external=files["external"],
    )
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["condition"] for r in records} == {"external"} and len(records) == 2
