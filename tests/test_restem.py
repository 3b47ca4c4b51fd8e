"""Tests for the ReST-EM outer loop (``seal_lm.loops.restem``) and ``seal train knowledge``: the keep
rules, a round end to end on the tiny random model (records, kept pairs, summary, the new policy),
a round that keeps nothing, resume after a kill, and bad input."""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

import seal_lm.loops.restem as restem
from seal_lm.adapt.lora import InnerLoopSettings
from seal_lm.cli import main
from seal_lm.cli.shared_options import ModelOptions
from seal_lm.cli.train import KNOWLEDGE_REWARDS
from seal_lm.domains.knowledge.data import Passage, Question
from seal_lm.domains.knowledge.domain import KnowledgeDomain, KnowledgeSettings
from seal_lm.loops.restem import Kept, RestemSettings, Scored, best_of_k, positive_gain, threshold, train_policy
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.loading import load_model
from seal_lm.model.prompting import PromptFormatter
from seal_lm.runs.rundir import RunDir, RunDirError

# ---------------------------------------------------------------------------------------------
# Keep rules
# ---------------------------------------------------------------------------------------------


def test_best_of_k_keeps_the_single_best():
    assert best_of_k(Scored([0.2, 0.9, None, 0.5], baseline=None)) == Kept([1], None)


def test_best_of_k_breaks_a_tie_with_the_first_and_notes_it():
    assert best_of_k(Scored([0.5, 1.0, None, 1.0], baseline=None)) == Kept([1], "tie")


def test_best_of_k_keeps_nothing_when_every_reward_is_zero():
    assert best_of_k(Scored([0.0, 0.0, 0.0], baseline=None)) == Kept([], "all-zero")
    assert best_of_k(Scored([0.0, None], baseline=None)) == Kept([], "all-zero")


def test_rejected_self_edits_are_never_kept_by_any_rule():
    """A rejected self-edit (reward None) is never kept, even by rules that would keep any reward."""
    mixed = Scored([None, 0.0, None], baseline=-1.0)
    assert threshold(0.0)(mixed).indices == [1]
    assert threshold(-10.0)(mixed).indices == [1]
    assert positive_gain(mixed).indices == [1]
    assert best_of_k(mixed).indices == []
    all_rejected = Scored([None, None], baseline=-1.0)
    for rule in (best_of_k, positive_gain, threshold(0.0), threshold(-10.0)):
        assert rule(all_rejected).indices == []


def test_positive_gain_keeps_every_reward_strictly_above_the_baseline():
    assert positive_gain(Scored([0.5, 0.6, 0.4, 0.9, None], baseline=0.5)) == Kept([1, 3], None)
    assert positive_gain(Scored([0.5, 0.5], baseline=0.5)) == Kept([], "no-gain")


def test_positive_gain_needs_a_baseline():
    with pytest.raises(ValueError, match="baseline"):
        positive_gain(Scored([1.0], baseline=None))


def test_threshold_keeps_rewards_at_or_above_the_minimum():
    assert threshold(0.5)(Scored([0.49, 0.5, 1.0, None, 0.0], baseline=None)) == Kept([1, 2], None)
    assert threshold(1.0)(Scored([0.99, 0.0], baseline=None)) == Kept([], "below-threshold")


def test_the_rewards_average_correct_or_f1_over_the_graded_answers():
    grades = [{"correct": True, "f1": 1.0}, {"correct": False, "f1": 0.5}]
    assert KNOWLEDGE_REWARDS["correct"](grades) == restem.mean_correct(grades) == 0.5
    assert KNOWLEDGE_REWARDS["f1"](grades) == 0.75


# ---------------------------------------------------------------------------------------------
# train_policy on the tiny model, with a custom keep rule
# ---------------------------------------------------------------------------------------------

PASSAGES = [
    Passage(f"p{i:04d}", title, context, (Question(f"p{i:04d}-q00", question, (answer,)),))
    for i, (title, context, question, answer) in enumerate(
        [
            ("Eiffel Tower", "The Eiffel Tower is in Paris. It was completed in 1889.", "Where is it?", "Paris"),
            ("Mongol Empire", "Genghis Khan founded the Mongol Empire.", "Who founded it?", "Genghis Khan"),
            ("Water", "Water boils at 100 degrees at sea level.", "When does water boil?", "100 degrees"),
            ("World's Fair", "The World's Fair of 1889 was held in Paris.", "Where was the fair?", "Paris"),
        ]
    )
]
SETTINGS = RestemSettings(
    rounds=1,
    contexts_per_round=2,
    k=2,
    self_edit_generation=GenerationSettings(max_new_tokens=16, temperature=0.7, top_p=0.95),
    policy_update=InnerLoopSettings(
        rank=4, alpha=8, target_modules=("all-linear",), lr=1e-3, epochs=1, loss_on="completion"
    ),
)


class RawTextKnowledgeDomain(KnowledgeDomain):
    """The knowledge domain, except that a self-edit is never rejected: its raw text is trained on.

    The tiny random model writes one truncated line, which the real parser always rejects; this
    domain lets the rewards be measured (a domain is a plain object the loop only calls)."""

    def parse_self_edit(self, passage, text, truncated=False):
        return self._plan(passage, [f"{passage.title}\n{text}", f"{passage.title}\n{passage.context}"])


def make_domain(formatter: PromptFormatter) -> KnowledgeDomain:
    settings = KnowledgeSettings(answer_max_tokens=4, inner_loop=InnerLoopSettings(rank=4, alpha=8, epochs=1))
    return RawTextKnowledgeDomain(formatter, settings)


def recording(calls: list[str], load):
    """``load`` (of a model spec), recording each spec it is called with."""

    def recorded(spec: str):
        calls.append(spec)
        return load(spec)

    return recorded


def recording_workers(calls: list[str]):
    """The CLI's E-step workers, recording which policy each one loads."""
    return recording(calls, partial(ModelOptions().worker, make_domain))


def train(run, model_dir, settings, keep=best_of_k, workers=None, load_policy=load_model):
    """``train_policy`` on PASSAGES, starting from ``model_dir``, with the CLI's workers unless given."""
    options = ModelOptions(model=str(model_dir))
    workers = workers or partial(options.worker, make_domain)
    return train_policy(
        run, PASSAGES, options.domain(make_domain), workers, load_policy, str(model_dir), settings, keep
    )


def keep_first(scored: Scored) -> Kept:
    """A user-written keep rule: a plain callable."""
    return Kept([0], "first")


def state_dict(path) -> dict[str, torch.Tensor]:
    return load_model(str(path)).model.state_dict()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def start_weights(tiny_model_dir) -> dict[str, torch.Tensor]:
    return state_dict(tiny_model_dir)


@pytest.fixture(scope="module", params=[False, True], ids=["lora-merge", "full-finetune"])
def kept_round(request, tmp_path_factory, tiny_model_dir):
    """One round (2 contexts, k=2) that keeps each context's first self-edit, with either M-step."""
    run = RunDir.open(tmp_path_factory.mktemp("restem") / "run", {"test": "kept-round", "full": request.param})
    loads: list[str] = []
    settings = replace(SETTINGS, full_finetune=request.param)
    policy = train(run, tiny_model_dir, settings, keep_first, workers=recording_workers(loads))
    return {"run": run, "policy": policy, "loads": loads, "settings": settings}


def test_samples_hold_every_context_once_with_k_scored_self_edits(kept_round):
    records = read_jsonl(kept_round["run"].path / "round-1" / "samples.jsonl")
    assert len(records) == 2
    ids = [r["context_id"] for r in records]
    assert len(set(ids)) == 2 and set(ids) <= {p.id for p in PASSAGES}
    titles = {p.id: p.title for p in PASSAGES}
    for record in records:
        assert titles[record["context_id"]] in record["prompt"]
        assert len(record["samples"]) == 2 and len(record["rewards"]) == 2
        for sample, reward in zip(record["samples"], record["rewards"]):
            assert sample["rejected"] is None
            assert isinstance(sample["text"], str) and sample["tokens"] <= 16
            assert len(sample["seed_rewards"]) == 1  # inner_seeds=1
            assert reward == statistics.fmean(sample["seed_rewards"]) and 0.0 <= reward <= 1.0
        assert record["samples"][0]["text"] != record["samples"][1]["text"]  # k distinct draws, not one repeated
        assert record["baseline"] is None  # not measured unless asked
        assert record["kept"] == [0] and record["keep_note"] == "first"


def test_kept_pairs_are_the_chosen_self_edits(kept_round):
    path = kept_round["run"].path / "round-1"
    records = read_jsonl(path / "samples.jsonl")
    pairs = read_jsonl(path / "kept.jsonl")
    assert pairs == [
        {
            "context_id": r["context_id"],
            "prompt": r["prompt"],
            "completion": r["samples"][0]["text"],
            "reward": r["rewards"][0],
        }
        for r in records
    ]


def test_summary_matches_the_records(kept_round):
    path = kept_round["run"].path / "round-1"
    records = read_jsonl(path / "samples.jsonl")
    summary = json.loads((path / "summary.json").read_text())
    rewards = [r for record in records for r in record["rewards"]]
    assert summary["round"] == 1
    assert summary["contexts"] == 2 and summary["self_edits"] == 4
    assert summary["mean_reward"] == pytest.approx(statistics.fmean(rewards))
    assert summary["contexts_with_any_reward"] == sum(1 for record in records if max(record["rewards"]) > 0)
    assert summary["contexts_improving_on_baseline"] is None  # best-of-k measures no passage-only baseline
    assert summary["kept"] == 2
    assert summary["keep_notes"] == {"first": 2}
    assert summary["rejected_self_edits"] == 0
    assert summary["policy_carried_over"] is False
    assert summary["policy_update"]["steps"] == 2  # 2 kept pairs, batch size 1, 1 epoch


def test_new_policy_is_a_loadable_model_with_changed_weights(kept_round, start_weights, tiny_model_dir):
    policy = Path(kept_round["policy"])
    assert policy == kept_round["run"].path / "round-1" / "policy"
    assert kept_round["loads"] == [str(tiny_model_dir)]  # round 1 samples from the starting model
    new_weights = state_dict(policy)
    assert set(new_weights) == set(start_weights)  # a plain model: no LoRA tensors left
    changed = [name for name in start_weights if not torch.equal(new_weights[name], start_weights[name])]
    assert changed, "the M-step left every weight unchanged"
    assert all(torch.isfinite(t).all() for t in new_weights.values())
    assert not list(kept_round["run"].path.rglob(".policy-*"))  # no staging folder left behind


def test_the_final_policy_is_also_saved_as_a_small_adapter_that_loads_as_the_policy(
    kept_round, tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch
):
    adapter = kept_round["run"].path / "policy-adapter"
    if kept_round["settings"].full_finetune:  # every weight may change: no LoRA adapter holds that
        assert not adapter.exists()
        return
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    assert config["r"] == 4  # one round of a rank-4 M-step
    monkeypatch.setenv("SEAL_LM_CACHE", str(tmp_path / "cache"))
    probe = tiny_tokenizer("The Eiffel Tower", return_tensors="pt")
    with torch.no_grad():
        from_adapter = load_model(str(adapter)).model(**probe).logits
        policy = load_model(kept_round["policy"]).model(**probe).logits
        base = load_model(str(tiny_model_dir)).model(**probe).logits
    assert (from_adapter - policy).abs().max() < 0.05 * (policy - base).abs().max()  # bf16 factors


def test_a_finished_round_is_not_redone(kept_round, tiny_model_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(restem, "_score_context", lambda *a, **kw: calls.append(a))
    loads: list[str] = []
    policy = train(
        kept_round["run"],
        tiny_model_dir,
        kept_round["settings"],
        keep_first,
        workers=recording_workers(loads),
        load_policy=recording(loads, load_model),
    )
    assert policy == kept_round["policy"]
    assert calls == [] and loads == []


def test_kill_between_e_step_and_m_step_redoes_only_the_m_step(kept_round, tmp_path, monkeypatch, tiny_model_dir):
    """With every context scored but no policy saved, a re-run trains the same policy again without
    scoring anything (the M-step is seeded)."""
    run = RunDir(tmp_path / "run")
    shutil.copytree(kept_round["run"].path, run.path)
    shutil.rmtree(run.path / "round-1" / "policy")
    (run.path / "round-1" / "summary.json").unlink()
    calls = []
    monkeypatch.setattr(restem, "_score_context", lambda *a, **kw: calls.append(a))

    policy = train(run, tiny_model_dir, kept_round["settings"], keep_first)

    assert calls == []
    assert (run.path / "round-1" / "summary.json").is_file()
    redone, original = state_dict(policy), state_dict(kept_round["policy"])
    assert all(torch.equal(redone[name], original[name]) for name in original)


def test_a_kill_while_the_policy_is_saved_never_loses_the_rounds_summary(
    kept_round, tmp_path, monkeypatch, tiny_model_dir
):
    """A round counts as done once its policy folder exists, so its summary must exist by then; a
    re-run finishes the round without scoring anything."""
    run = RunDir(tmp_path / "run")
    shutil.copytree(kept_round["run"].path, run.path)
    shutil.rmtree(run.path / "round-1" / "policy")
    (run.path / "round-1" / "summary.json").unlink()
    original_save = restem._save_policy

    def killed_once_saved(*args):
        original_save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(restem, "_save_policy", killed_once_saved)
    with pytest.raises(KeyboardInterrupt):
        train(run, tiny_model_dir, kept_round["settings"], keep_first)
    if (run.path / "round-1" / "policy").exists():
        assert (run.path / "round-1" / "summary.json").is_file()

    monkeypatch.setattr(restem, "_save_policy", original_save)
    calls = []
    monkeypatch.setattr(restem, "_score_context", lambda *a, **kw: calls.append(a))
    policy = train(run, tiny_model_dir, kept_round["settings"], keep_first)

    assert calls == []
    summary = json.loads((run.path / "round-1" / "summary.json").read_text())
    assert summary["kept"] == 2 and summary["policy_carried_over"] is False
    assert [p.name for p in (run.path / "round-1").iterdir() if p.name.startswith(".")] == []  # no staging folder left
    redone, expected = state_dict(policy), state_dict(kept_round["policy"])
    assert all(torch.equal(redone[name], expected[name]) for name in expected)


def test_a_round_that_keeps_nothing_carries_the_policy_over(tmp_path, tiny_model_dir, start_weights):
    """The E-step put LoRA layers into the model; with nothing kept, the saved policy must still be
    exactly the starting model."""
    run = RunDir.open(tmp_path / "run", {"test": "nothing-kept"})
    policy = train(run, tiny_model_dir, SETTINGS, lambda s: Kept([], "x"))

    saved = state_dict(policy)
    assert set(saved) == set(start_weights)
    assert all(torch.equal(saved[name], start_weights[name]) for name in start_weights)
    assert (run.path / "round-1" / "kept.jsonl").read_text() == ""
    summary = json.loads((run.path / "round-1" / "summary.json").read_text())
    assert summary["policy_carried_over"] is True
    assert summary["policy_update"] is None
    assert summary["kept"] == 0 and summary["keep_notes"] == {"x": 2}


def test_the_next_round_samples_from_the_previous_rounds_policy(tmp_path, tiny_model_dir):
    run = RunDir.open(tmp_path / "run", {"test": "two-rounds"})
    loads: list[str] = []
    settings = replace(SETTINGS, rounds=2, contexts_per_round=1, k=1)
    policy = train(run, tiny_model_dir, settings, keep_first, workers=recording_workers(loads))

    assert loads == [str(tiny_model_dir), str(run.path / "round-1" / "policy")]
    assert policy == str(run.path / "round-2" / "policy")
    assert len(read_jsonl(run.path / "round-2" / "samples.jsonl")) == 1


def test_round_2_without_the_round_1_policy_is_refused(tmp_path, tiny_model_dir):
    run = RunDir(tmp_path / "run")
    (run.path / "round-1").mkdir(parents=True)
    (run.path / "round-1" / "samples.jsonl").write_text("")
    (run.path / "round-2").mkdir()

    def must_not_load(spec):
        raise AssertionError(f"loaded {spec} for an inconsistent run")

    with pytest.raises(RunDirError, match="inconsistent") as caught:
        train(run, tiny_model_dir, replace(SETTINGS, rounds=2), workers=must_not_load, load_policy=must_not_load)
    assert "round-1" in str(caught.value) and "policy" in str(caught.value)


def test_a_round_folder_without_samples_is_refused(tmp_path, tiny_model_dir):
    run = RunDir(tmp_path / "run")
    (run.path / "round-1").mkdir(parents=True)
    (run.path / "round-1" / "kept.jsonl").write_text("")

    with pytest.raises(RunDirError, match="samples.jsonl"):
        train(run, tiny_model_dir, SETTINGS)


# ---------------------------------------------------------------------------------------------
# seal train knowledge, end to end
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    rows = [
        {
            "id": p.id,
            "title": p.title,
            "context": p.context,
            "questions": [{"question": q.question, "answer": list(q.answers)} for q in p.questions],
        }
        for p in PASSAGES
    ]
    path = tmp_path_factory.mktemp("restem-data") / "passages.json"
    path.write_text(json.dumps(rows, indent=1))
    return path


def train_args(model_dir, data, out, *extra: str) -> list[str]:
    return [
        "train",
        "knowledge",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--rounds",
        "1",
        "--contexts-per-round",
        "2",
        "--k",
        "2",
        "--epochs",
        "1",
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--policy-rank",
        "4",
        "--policy-alpha",
        "8",
        "--policy-epochs",
        "1",
        "--self-edit-max-tokens",
        "16",
        "--answer-max-tokens",
        "4",
        "--keep-rule",
        "threshold",
        "--keep-threshold",
        "0",
        *extra,
    ]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_model_dir, data_file):
    out = tmp_path_factory.mktemp("train-cli") / "run"
    return {"code": main(train_args(tiny_model_dir, data_file, out)), "out": out}


def test_cli_round_writes_consistent_records_summary_and_policy(cli_run, start_weights):
    """Threshold 0 keeps exactly the self-edits that parsed (the tiny model's truncated one-line
    self-edits are usually rejected); the summary and the policy agree with what was kept."""
    assert cli_run["code"] == 0
    path = cli_run["out"] / "round-1"
    records = read_jsonl(path / "samples.jsonl")
    assert len(records) == 2 and len({r["context_id"] for r in records}) == 2
    for record in records:
        assert len(record["samples"]) == 2
        for sample, reward in zip(record["samples"], record["rewards"]):
            assert (reward is None) == bool(sample["rejected"])
        assert record["kept"] == [i for i, r in enumerate(record["rewards"]) if r is not None]
    pairs = read_jsonl(path / "kept.jsonl")
    assert [(p["context_id"], p["completion"]) for p in pairs] == [
        (r["context_id"], r["samples"][i]["text"]) for r in records for i in r["kept"]
    ]
    summary = json.loads((path / "summary.json").read_text())
    assert summary["kept"] == len(pairs)
    assert summary["rejected_self_edits"] == sum(r is None for record in records for r in record["rewards"])
    assert summary["mean_reward"] == pytest.approx(
        statistics.fmean(r or 0.0 for record in records for r in record["rewards"])
    )
    assert summary["contexts_with_any_reward"] == sum(
        1 for record in records if max(r or 0.0 for r in record["rewards"]) > 0
    )
    assert summary["policy_carried_over"] is (not pairs)
    saved = state_dict(path / "policy")
    unchanged = all(torch.equal(saved[name], start_weights[name]) for name in start_weights)
    assert unchanged is (not pairs)


def test_cli_rerun_of_a_finished_run_changes_nothing(cli_run, tiny_model_dir, data_file, monkeypatch):
    before = (cli_run["out"] / "round-1" / "samples.jsonl").read_bytes()
    calls = []
    monkeypatch.setattr(restem, "_score_context", lambda *a, **kw: calls.append(a))
    assert main(train_args(tiny_model_dir, data_file, cli_run["out"])) == 0
    assert calls == []
    assert (cli_run["out"] / "round-1" / "samples.jsonl").read_bytes() == before


def test_killed_round_resumes_at_the_unfinished_context(tmp_path, tiny_model_dir, data_file, monkeypatch, capsys):
    """Ctrl-C while scoring the 2nd context: the re-run scores only that context (the same one: the
    round's contexts are seeded), and leaves the 1st context's line byte for byte as it was."""
    out = tmp_path / "run"
    args = train_args(tiny_model_dir, data_file, out)
    original = restem._score_context
    first_run: list[str] = []

    def interrupt_on_second(domain, context, *rest):
        first_run.append(context.id)
        if len(first_run) == 2:
            raise KeyboardInterrupt
        return original(domain, context, *rest)

    monkeypatch.setattr(restem, "_score_context", interrupt_on_second)
    assert main(args) == 130
    assert "resume" in capsys.readouterr().err
    samples = out / "round-1" / "samples.jsonl"
    first_lines = samples.read_bytes().splitlines(keepends=True)
    assert len(first_lines) == 1
    assert json.loads(first_lines[0])["context_id"] == first_run[0]
    assert not (out / "round-1" / "policy").exists()

    second_run: list[str] = []
    monkeypatch.setattr(
        restem,
        "_score_context",
        lambda domain, context, *rest: second_run.append(context.id) or original(domain, context, *rest),
    )
    assert main(args) == 0

    assert second_run == [first_run[1]]
    lines = samples.read_bytes().splitlines(keepends=True)
    assert lines[0] == first_lines[0]
    assert [json.loads(line)["context_id"] for line in lines] == first_run
    assert (out / "round-1" / "policy" / "config.json").is_file()


def test_corrupt_middle_line_in_samples_is_a_user_error(tmp_path, tiny_model_dir, data_file, monkeypatch, capsys):
    out = tmp_path / "run"
    args = train_args(tiny_model_dir, data_file, out)
    original = restem._score_context
    calls = []

    def interrupt_on_second(*a, **kw):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*a, **kw)

    monkeypatch.setattr(restem, "_score_context", interrupt_on_second)
    assert main(args) == 130
    samples = out / "round-1" / "samples.jsonl"
    good = samples.read_bytes()
    samples.write_bytes(b'{"context_id": "p00\n' + good)  # line 1 is cut short, line 2 is complete
    capsys.readouterr()

    assert main(args) == 2

    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err_lines) == 1, err_lines
    assert err_lines[0].startswith("seal: error:")
    assert "samples.jsonl" in err_lines[0] and "line 1" in err_lines[0]
    assert samples.read_bytes() == b'{"context_id": "p00\n' + good  # left as it was for the user to inspect


def test_more_contexts_per_round_than_passages_is_a_user_error(tmp_path, tiny_model_dir, data_file, capsys):
    args = train_args(tiny_model_dir, data_file, tmp_path / "run")
    args[args.index("--contexts-per-round") + 1] = "5"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("seal: error:")
    assert "--contexts-per-round 5" in err and "4" in err


def test_an_unknown_keep_rule_is_a_user_error_listing_the_rules(tmp_path, tiny_model_dir, data_file, capsys):
    args = train_args(tiny_model_dir, data_file, tmp_path / "run")
    args[args.index("--keep-rule") + 1] = "magic"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("seal: error:")
    assert "magic" in err
    for rule in ("best-of-k", "positive-gain", "threshold"):
        assert rule in err
    assert not (tmp_path / "run").exists()  # refused before a run directory is made


def test_positive_gain_run_measures_the_passage_only_baseline(tmp_path, tiny_model_dir, data_file):
    out = tmp_path / "run"
    args = train_args(tiny_model_dir, data_file, out)
    args[args.index("--keep-rule") + 1] = "positive-gain"
    assert main(args) == 0
    for record in read_jsonl(out / "round-1" / "samples.jsonl"):
        assert isinstance(record["baseline"], float) and 0.0 <= record["baseline"] <= 1.0
        assert record["kept"] == [
            i for i, r in enumerate(record["rewards"]) if r is not None and r > record["baseline"]
        ]
    summary = json.loads((out / "round-1" / "summary.json").read_text())
    improving = sum(
        1 for r in read_jsonl(out / "round-1" / "samples.jsonl") if max(x or 0.0 for x in r["rewards"]) > r["baseline"]
    )
    assert summary["contexts_improving_on_baseline"] == improving


@pytest.mark.parametrize("flag, value", [("--k", "0"), ("--contexts-per-round", "0"), ("--contexts-per-round", "-1")])
def test_a_non_positive_count_is_a_user_error_naming_its_flag(tmp_path, tiny_model_dir, data_file, capsys, flag, value):
    """Expected: exit 2 before any round starts, with a message naming the flag (not a crash after
    the E-step, a silent empty round, or an error from ``random.sample``)."""
    out = tmp_path / "run"
    args = train_args(tiny_model_dir, data_file, out)
    args[args.index(flag) + 1] = value
    code = main(args)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("seal: error:")]
    assert code == 2 and len(errors) == 1, (code, errors)
    assert flag in errors[0], errors[0]
    assert not (out / "round-1").exists()
