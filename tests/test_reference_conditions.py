"""The in-context and passage-repeat conditions of ``seal eval knowledge``, and ``--inner-objective``
end to end on the tiny random model (records, config, resume, refusals)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_RUN, build_model, text_id
from test_restem import train_args

import seal_lm.adapt.objectives as objectives
import seal_lm.cli.shared_options as shared_options
import seal_lm.loops.evaluate as evaluate
from seal_lm.adapt.lora import InnerLoop
from seal_lm.cli import main
from seal_lm.continual.ledger import Ledger
from seal_lm.domains.knowledge.data import Passage, Question
from seal_lm.domains.knowledge.domain import KnowledgeDomain, KnowledgeSettings
from seal_lm.loops.self_edits import sample_self_edits, sample_self_edits_of_many
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.prompting import PromptFormatter

PASSAGE = Passage(
    id="p0",
    title="Eiffel Tower",
    context="The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
    questions=(Question(id="q0", question="Where is the Eiffel Tower?", answers=("Paris",)),),
)
SELF_EDIT = (
    "1. The Eiffel Tower stands in Paris.\n2. The tower was finished in 1889.\n3. It was built for the World's Fair."
)


@pytest.fixture
def domain(tiny_tokenizer) -> KnowledgeDomain:
    return KnowledgeDomain(PromptFormatter(tiny_tokenizer, chat=False))


def tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# --- the domain ------------------------------------------------------------------------------------


def test_every_training_sequence_carries_its_passage_for_the_teacher(domain):
    document = f"{PASSAGE.title}\n{PASSAGE.context}"
    for plan in (domain.parse_self_edit(PASSAGE, SELF_EDIT), domain.context_plan(PASSAGE)):
        assert {example.context for example in plan.examples} == {document + "\n\n"}
    assert [e.completion for e in domain.context_plan(PASSAGE).examples] == [document]


@pytest.mark.parametrize("style", ["few-shot", "paper"])
def test_in_context_prompts_add_only_the_passage_to_the_probe_prompts(tiny_tokenizer, style):
    domain = KnowledgeDomain(PromptFormatter(tiny_tokenizer, chat=False), KnowledgeSettings(answer_style=style))
    [closed] = domain.probe_prompts(PASSAGE)
    [shown] = domain.in_context_prompts(PASSAGE)

    assert PASSAGE.context not in closed and "Passage:" not in closed
    assert shown.replace(f"Passage: {PASSAGE.context}\n", "") == closed
    assert closed.endswith(
        "Topic: Eiffel Tower\nQuestion: Where is the Eiffel Tower?\nAnswer:"
        if style == "few-shot"
        else "Topic: Eiffel Tower\nLet's answer a question directly and concisely.\nQuestion: Where is the Eiffel Tower?\nAnswer:"
    )


def test_passage_repeat_matches_the_self_edit_plan_in_tokens(domain, tiny_tokenizer):
    document = f"{PASSAGE.title}\n{PASSAGE.context}"
    long_edit = "\n".join(
        f"{i}. The Eiffel Tower in Paris was completed in the year 1889, fact {i}." for i in range(1, 13)
    )
    for text in (SELF_EDIT, long_edit):
        plan = domain.parse_self_edit(PASSAGE, text)
        planned = sum(tokens(tiny_tokenizer, e.completion) for e in plan.examples)

        repeated = domain.repeat_plan(PASSAGE, plan)

        assert {e.completion for e in repeated.examples} == {document}
        assert {e.context for e in repeated.examples} == {document + "\n\n"}
        copies = len(repeated.examples)
        assert abs(copies * tokens(tiny_tokenizer, document) - planned) <= tokens(tiny_tokenizer, document) / 2
    assert len(repeated.examples) > 2  # the long self-edit is several passages long


def test_passage_repeat_trains_the_passage_at_least_once(domain):
    tiny_plan = domain.context_plan(PASSAGE)  # a plan smaller than one copy still gets one
    assert len(domain.repeat_plan(PASSAGE, tiny_plan).examples) == 1


# --- seal eval knowledge, end to end ------------------------------------------------------------------

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
CONDITIONS = "base,passage,self-edit,in-context,passage-repeat"


def eval_args(model_dir: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "knowledge",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--conditions",
        CONDITIONS,
        "--k",
        "2",
        "--epochs",
        "1",
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--self-edit-max-tokens",
        "24",
        "--self-edit-temperature",
        "1.0",
        "--answer-max-tokens",
        "4",
        "--bootstrap-samples",
        "100",
        "--inner-objective",
        "distill",
        "--seed",
        "2",  # a seed whose self-edits of these passages include usable lines (the random model's are mostly noise)
        *extra,
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("distill")
    data = folder / "passages.json"
    data.write_text(json.dumps(PASSAGES))
    args = eval_args(tiny_model_dir, data, folder / "run")
    return {"code": main(args), "out": folder / "run", "args": args}


def test_a_distill_run_of_every_reference_condition_records_its_objective(distill_run):
    assert distill_run["code"] == 0
    out = distill_run["out"]
    records = {r["unit"]: r for r in read_jsonl(out / "records.jsonl")}
    assert len(records) == 2 * (1 + 1 + 2 + 1 + 2)
    config = json.loads((out / "config.json").read_text())
    assert (config["config"]["inner_objective"], config["config"]["distill_weight"]) == ("distill", 0.5)
    rows = json.loads((out / "results.json").read_text())["conditions"]
    assert list(rows) == CONDITIONS.split(",")
    assert rows["in-context"]["units"] == 2 and rows["in-context"]["mean_trained_tokens"] == 0
    assert rows["passage-repeat"]["units"] == 4
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        "base.json",
        "in-context.json",
        "passage-repeat-0.json",
        "passage-repeat-1.json",
        "passage.json",
        "self-edit-0.json",
        "self-edit-1.json",
    ]
    # Distillation starts from a student that is the teacher without the passage: a small divergence,
    # where next-token cross-entropy on the random model starts near log(vocabulary) = 6.
    passage = records[f"{text_id(PASSAGES[0]['context'])}/passage/0"]["train"]
    assert 0 < passage["first_loss"] < 1


def test_passage_repeat_is_the_passage_repeated_to_the_size_of_the_same_self_edit(distill_run):
    records = {r["unit"]: r for r in read_jsonl(distill_run["out"] / "records.jsonl")}
    assert any(
        r["train"] for r in records.values() if r["condition"] == "passage-repeat"
    )  # the tiny model writes some usable lines
    for passage in PASSAGES:
        document, passage_id = f"{passage['title']}\n{passage['context']}", text_id(passage["context"])
        for sample in range(2):
            repeat = records[f"{passage_id}/passage-repeat/{sample}"]
            edit = records[f"{passage_id}/self-edit/{sample}"]
            assert repeat["self_edit"] == edit["self_edit"]  # the same sample, written again
            assert repeat["rejected"] == edit["rejected"]
            if edit["train"] is None:
                assert repeat["train"] is None
                continue
            assert set(repeat["train"]["sequences"]) == {document}
            one_copy = records[f"{passage_id}/passage/0"]["train"]["sequence_tokens"]
            assert abs(repeat["train"]["sequence_tokens"] - edit["train"]["sequence_tokens"]) <= one_copy / 2


def test_a_rerun_resumes_without_redoing_anything(distill_run, monkeypatch):
    out = distill_run["out"]
    before = (out / "records.jsonl").read_bytes()
    calls = []
    original = evaluate._plan_for
    monkeypatch.setattr(evaluate, "_plan_for", lambda *a, **kw: calls.append(a) or original(*a, **kw))

    assert main(distill_run["args"]) == 0

    assert calls == []
    assert (out / "records.jsonl").read_bytes() == before


def test_the_self_edits_are_saved_before_training_and_a_resumed_run_does_not_write_them_again(
    distill_run, tmp_path, monkeypatch
):
    out = distill_run["out"]
    written = {(w["context_id"], w["sample"]): w["self_edit"] for w in read_jsonl(out / evaluate.WRITTEN)}
    records = read_jsonl(out / "records.jsonl")
    trained = {(r["context_id"], r["sample"]): r["self_edit"] for r in records if r["condition"] == "self-edit"}
    assert written == trained and len(written) == 2 * 2  # both passages' two samples, written once

    # killed after the self-edits were written, before any unit finished
    resumed = tmp_path / "run"
    resumed.mkdir()
    for name in ("config.json", evaluate.WRITTEN):
        (resumed / name).write_bytes((out / name).read_bytes())

    def no_writing(*args, **kwargs):
        raise AssertionError("a saved self-edit was written again")

    monkeypatch.setattr(evaluate, "_write_self_edits", no_writing)
    args = [str(resumed) if arg == str(out) else arg for arg in distill_run["args"]]
    assert main(args) == 0

    def outcome(record: dict) -> tuple:
        return record["unit"], record["self_edit"], record["grades"], (record["train"] or {}).get("sequences")

    again = read_jsonl(resumed / "records.jsonl")
    assert sorted(map(outcome, again)) == sorted(map(outcome, records))


def test_a_batch_killed_half_saved_writes_what_is_missing_alone_and_the_same(distill_run, tmp_path, monkeypatch):
    """Both passages' self-edits are written in one batch; if only the first passage's were saved, the
    re-run writes the second alone, and it draws the same self-edits as it did beside the first."""
    out = distill_run["out"]
    written = read_jsonl(out / evaluate.WRITTEN)
    first = written[0]["context_id"]
    resumed = tmp_path / "run"
    resumed.mkdir()
    (resumed / "config.json").write_bytes((out / "config.json").read_bytes())
    (resumed / evaluate.WRITTEN).write_text(
        "".join(json.dumps(line) + "\n" for line in written if line["context_id"] == first)
    )
    batches = []
    original = evaluate._write_self_edits
    monkeypatch.setattr(
        evaluate,
        "_write_self_edits",
        lambda worker, contexts, **kw: batches.append(contexts) or original(worker, contexts, **kw),
    )
    args = [str(resumed) if arg == str(out) else arg for arg in distill_run["args"]]
    assert main(args) == 0

    assert [len(batch) for batch in batches] == [1]  # what was missing, in a batch of its own
    again = read_jsonl(resumed / evaluate.WRITTEN)
    assert len(again) == len(written) == 4  # the missing two appended, none twice
    assert sorted(json.dumps(line, sort_keys=True) for line in again) == sorted(
        json.dumps(line, sort_keys=True) for line in written
    )


@pytest.mark.parametrize(
    ("count", "most", "workers", "sizes"),
    [
        (10, 8, 2, [5, 5]),
        (10, 8, 1, [5, 5]),
        (17, 8, 2, [6, 6, 5]),
        (3, 8, 4, [1, 1, 1]),
        (4, 0, 1, [1, 1, 1, 1]),
        (0, 8, 2, []),
    ],
)
def test_self_edits_are_written_in_even_batches_at_least_one_per_worker(count, most, workers, sizes):
    batches = evaluate.even_batches(list(range(count)), most, workers)
    assert [len(batch) for batch in batches] == sizes
    assert [item for batch in batches for item in batch] == list(range(count))  # in order, each once


def test_contexts_sampled_together_draw_what_each_draws_alone(tiny_tokenizer, domain):
    loop = InnerLoop(build_model(len(tiny_tokenizer)).eval(), tiny_tokenizer)
    passages = [
        Passage(id=f"p{i}", title=f"Tower {i}", context=f"Tower {i} is {'very ' * i}tall.", questions=())
        for i in range(3)
    ]
    settings = GenerationSettings(max_new_tokens=10, temperature=1.0, top_p=0.95, seed=3)
    together = sample_self_edits_of_many(loop, domain, passages, 2, settings)
    assert together == [sample_self_edits(loop, domain, passage, 2, settings) for passage in passages]
    assert len({g.text for _, generations in together for g in generations}) == 6  # every sample its own


def test_another_objective_in_the_same_run_directory_is_refused(distill_run, capsys):
    args = list(distill_run["args"])
    args[args.index("--inner-objective") + 1] = "sft"

    assert main(args) == 2
    assert "inner_objective" in capsys.readouterr().err


def test_the_batched_engine_with_distillation_is_refused_before_loading_a_model(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    data = tmp_path / "passages.json"
    data.write_text(json.dumps(PASSAGES))
    args = eval_args(tiny_model_dir, data, tmp_path / "run", "--engine", "batched")
    monkeypatch.setattr(shared_options, "load_model", lambda *a, **kw: pytest.fail("a model was loaded"))

    assert main(args) == 2
    assert "--engine sequential" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_pooled_setting_distills_each_sequence_from_its_own_passage(tmp_path, tiny_model_dir, monkeypatch):
    data = tmp_path / "passages.json"
    data.write_text(json.dumps(PASSAGES))
    args = eval_args(tiny_model_dir, data, tmp_path / "run", "--setting", "cpt")
    args[args.index("--conditions") + 1] = "in-context,passage,passage-repeat"
    teachers = []
    original = objectives.Teacher.__init__
    monkeypatch.setattr(
        objectives.Teacher,
        "__init__",
        lambda self, model, contexts, *a: teachers.append(contexts) or original(self, model, contexts, *a),
    )

    assert main(args) == 0

    units = {r["unit"]: r for r in read_jsonl(tmp_path / "run" / "records.jsonl")}
    assert sorted(units) == [
        "pooled/in-context/0",
        "pooled/passage-repeat/0",
        "pooled/passage-repeat/1",
        "pooled/passage/0",
    ]
    assert units["pooled/in-context/0"]["train"] is None and len(units["pooled/in-context/0"]["contexts"]) == 2
    passage_teacher = teachers[0]  # the passage condition's: one sequence per passage, each read after its own passage
    assert len(passage_teacher) == 2 and passage_teacher[0] != passage_teacher[1]


# --- the other commands that run the inner loop --------------------------------------------------------


def test_adapt_learns_with_distillation_records_it_in_the_ledger_and_resumes(tmp_path, tiny_model_dir):
    stream, out = tmp_path / "stream.jsonl", tmp_path / "run"
    stream.write_text(
        "".join(
            json.dumps({"title": p["title"], "text": p["context"], "questions": p["questions"]}) + "\n"
            for p in PASSAGES
        )
    )
    args = [
        "adapt",
        "--model",
        str(tiny_model_dir),
        "--stream",
        str(stream),
        "--out",
        str(out),
        *TINY_RUN,
        "--inner-objective",
        "sft+distill",
        "--distill-weight",
        "0.3",
    ]

    assert main(args) == 0
    assert main(args) == 0  # resumes: nothing left to learn

    with Ledger.open(out / "ledger", readonly=True) as ledger:
        updates = ledger.updates()
    inner_loop = updates[0].record.details["inner_loop"]
    assert (inner_loop["objective"], inner_loop["distill_weight"]) == ("sft+distill", 0.3)
    assert [u.record.decision for u in updates].count("initial") == 1 and len(updates) >= 3


def test_train_knowledge_scores_self_edits_with_a_distilled_inner_loop(tmp_path, tiny_model_dir):
    data = tmp_path / "passages.json"
    data.write_text(json.dumps(PASSAGES))
    out = tmp_path / "run"
    assert main(train_args(tiny_model_dir, data, out, "--inner-objective", "distill")) == 0
    assert json.loads((out / "config.json").read_text())["config"]["inner_objective"] == "distill"
    assert (out / "round-1" / "summary.json").is_file()
