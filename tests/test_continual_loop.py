"""Tests for seal_lm.loops.continual on the tiny model: updates committed as versions that restore bit for
bit (merge and stack), rollback and export, a crash between training and commit, rejection and the
replay retry, model-written probes, the faithfulness filter and candidate choice."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch
from conftest import build_model

from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings, TrainExample, TrainPlan
from seal_lm.continual.guards import RetentionPolicy, UpdateDecision
from seal_lm.continual.ledger import ACCEPTED, INITIAL, REJECTED, RETRY_WITH_REPLAY, Ledger, LedgerError
from seal_lm.continual.versions import export_version
from seal_lm.domains.knowledge.data import Passage, Question
from seal_lm.domains.knowledge.domain import KnowledgeDomain, KnowledgeSettings
from seal_lm.loops import continual
from seal_lm.loops.continual import ContinualLearner, ContinualSettings, drop_unfaithful
from seal_lm.model.generation import Generation
from seal_lm.model.loading import load_model
from seal_lm.model.prompting import PromptFormatter

KNOWLEDGE = KnowledgeSettings(answer_max_tokens=4, inner_loop=InnerLoopSettings(rank=4, alpha=8, epochs=2, lr=1e-2))
SETTINGS = ContinualSettings(
    probe_generation=replace(ContinualSettings().probe_generation, max_new_tokens=24),
    self_edit_generation=replace(ContinualSettings().self_edit_generation, max_new_tokens=16),
)
EIFFEL = Passage(
    "eiffel",
    "Eiffel Tower",
    "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
    (Question("e-q0", "Where is the Eiffel Tower?", ("Paris",)), Question("e-q1", "When was it completed?", ("1889",))),
)
MONGOL = Passage(
    "mongol",
    "Mongol Empire",
    "Genghis Khan founded the Mongol Empire. The Shah fled rather than surrender.",
    (Question("m-q0", "Who founded the Mongol Empire?", ("Genghis Khan",)),),
)
WATER = Passage("water", "Water", "Water boils at 100 degrees at sea level.", ())  # no gold questions


@contextlib.contextmanager
def learner_on(folder, model_dir, readonly: bool = False, **changes):
    """A learner on a freshly loaded tiny model, continuing from the ledger in ``folder``."""
    loaded = load_model(str(model_dir))
    domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat), KNOWLEDGE)
    with Ledger.open(folder, readonly=readonly) as ledger:
        yield ContinualLearner.open(
            ledger, InnerLoop(loaded.model, loaded.tokenizer), domain, replace(SETTINGS, **changes), str(model_dir)
        )


def weights(learner: ContinualLearner) -> dict[str, torch.Tensor]:
    """The learner's current model weights (adapters removed), copied."""
    return {name: tensor.clone() for name, tensor in learner.inner_loop.release().state_dict().items()}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("commit", ["merge", "stack"])
def test_accepted_updates_become_versions_that_restore_bit_for_bit(tmp_path, tiny_model_dir, commit):
    folder = tmp_path / "ledger"
    with learner_on(folder, tiny_model_dir, commit=commit) as learner:
        base = weights(learner)
        first = learner.learn(EIFFEL)
        second = learner.learn(MONGOL)
        live = weights(learner)
        replay = learner.replay.entries

        assert (first.record.decision, first.version, second.version) == (ACCEPTED, 2, 3)
        assert [u.record.decision for u in learner.ledger.updates()] == [INITIAL, ACCEPTED, ACCEPTED]
        assert learner.ledger.decided_documents() == {"eiffel", "mongol"}
        assert second.record.details["retention_documents"] == ["eiffel"]
        assert len(second.record.retention_before) == 2  # the first document's two questions
        changed = [name for name in live if not torch.equal(live[name], base[name])]
        assert changed and all(("q_proj" in name or "v_proj" in name) for name in changed)
        stored = learner.ledger.load_weights()
        assert all(("lora_" in name) == (commit == "stack") for name in stored)

    with learner_on(folder, tiny_model_dir, readonly=True, commit=commit) as reopened:
        assert_identical(weights(reopened), live)
        assert reopened.replay.entries == replay
        assert [e.document_id for e in replay] == ["eiffel", "mongol"]


@pytest.mark.parametrize("commit", ["merge", "stack"])
def test_rollback_and_export_give_back_the_exact_weights_a_version_had(tmp_path, tiny_model_dir, commit):
    folder = tmp_path / "ledger"
    with learner_on(folder, tiny_model_dir, commit=commit) as learner:
        version = learner.learn(EIFFEL).version
        when_current = weights(learner)
        learner.learn(MONGOL)
        assert not all(torch.equal(when_current[n], t) for n, t in weights(learner).items())
        learner.ledger.rollback(version, reason="test")

        exported = export_version(learner.ledger, version, tmp_path / "exported")

    assert_identical(load_model(str(exported)).model.state_dict(), when_current)
    with learner_on(folder, tiny_model_dir, commit=commit) as resumed:  # continues from the rolled-back version
        assert_identical(weights(resumed), when_current)
        assert [e.document_id for e in resumed.replay.entries] == ["eiffel"]
        assert resumed.learn(WATER).record.details["retention_documents"] == ["eiffel"]
        assert resumed.ledger.get(resumed.ledger.current().id).parent == version


def test_an_export_removes_what_a_killed_export_into_the_same_folder_left(tmp_path, tiny_model_dir):
    killed = tmp_path / ".exported.k2j4_x9a.partial"  # the staging folder of an export killed mid-save
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"half a model")
    with learner_on(tmp_path / "ledger", tiny_model_dir) as learner:
        version = learner.learn(EIFFEL).version
        exported = export_version(learner.ledger, version, tmp_path / "exported")
        assert_identical(load_model(str(exported)).model.state_dict(), weights(learner))

    assert not killed.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "ledger"]


def test_a_crash_between_training_and_commit_leaves_the_previous_version_current(tmp_path, tiny_model_dir, monkeypatch):
    folder = tmp_path / "ledger"
    with learner_on(folder, tiny_model_dir) as learner:
        learner.learn(EIFFEL)
        after_first = weights(learner)

        def crash(*args, **kwargs):
            raise RuntimeError("killed before the commit")

        monkeypatch.setattr(Ledger, "commit", crash)
        with pytest.raises(RuntimeError, match="killed before the commit"):
            learner.learn(MONGOL)  # trained and merged in memory, never committed
        monkeypatch.undo()
        assert learner.ledger.current().id == 2 and len(learner.ledger.updates()) == 2
        assert learner.ledger.decided_documents() == {"eiffel"}

    with learner_on(folder, tiny_model_dir) as resumed:
        assert_identical(weights(resumed), after_first)
        outcome = resumed.learn(MONGOL)
        assert outcome.version == 3 and resumed.ledger.get(3).parent == 2


def test_a_rejected_update_records_its_scores_and_leaves_the_model_unchanged(tmp_path, tiny_model_dir):
    impossible = RetentionPolicy(action="accept", min_gain=1.5)
    with learner_on(tmp_path / "ledger", tiny_model_dir, policy=impossible) as learner:
        before = weights(learner)

        outcome = learner.learn(EIFFEL)

        assert outcome.version is None and outcome.record.decision == REJECTED
        assert "below min_gain 1.500" in outcome.record.reason
        assert len(outcome.record.scores_before) == len(outcome.record.scores_after) == 2
        assert outcome.record.adapter_sha256 and outcome.record.details["train"]["steps"] > 0
        assert_identical(weights(learner), before)
        assert learner.ledger.current().id == 1 and learner.ledger.decided_documents() == {"eiffel"}
        assert learner.replay.entries == ()  # a document the model did not learn is no retention probe


@pytest.mark.parametrize("verify", [True, False])
def test_an_update_whose_training_diverged_is_rejected_with_the_reason(tmp_path, tiny_model_dir, verify):
    """float16 and an absurd learning rate: the loss overflows; the update is never merged, verified or not."""
    loaded = load_model(str(tiny_model_dir), dtype="float16")
    absurd = replace(KNOWLEDGE, inner_loop=replace(KNOWLEDGE.inner_loop, lr=1e9, epochs=5))
    domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat), absurd)
    with Ledger.open(tmp_path / "ledger") as ledger:
        learner = ContinualLearner.open(
            ledger,
            InnerLoop(loaded.model, loaded.tokenizer),
            domain,
            replace(SETTINGS, verify=verify),
            str(tiny_model_dir),
        )
        before = weights(learner)

        outcome = learner.learn(EIFFEL)

        assert outcome.version is None and outcome.record.decision == REJECTED
        assert outcome.record.reason.startswith("training diverged") and "learning rate 1e+09" in outcome.record.reason
        assert outcome.record.details["train"]["stopped"] == outcome.record.reason
        assert_identical(weights(learner), before)
        assert ledger.current().id == 1 and ledger.decided_documents() == {"eiffel"}


def test_a_retry_mixes_replayed_documents_into_training_and_is_recorded(tmp_path, tiny_model_dir, monkeypatch):
    real = continual.decide_update

    def retry_once(new_before, new_after, retention_before, retention_after, policy, *, retried=False):
        decision = real(new_before, new_after, retention_before, retention_after, policy, retried=retried)
        if retention_before and not retried:
            return UpdateDecision(RETRY_WITH_REPLAY, "test: retry", decision.gain, decision.retention_drop)
        return decision

    monkeypatch.setattr(continual, "decide_update", retry_once)
    with learner_on(tmp_path / "ledger", tiny_model_dir, policy=RetentionPolicy(tolerance=1.0)) as learner:
        first = learner.learn(EIFFEL)
        outcome = learner.learn(MONGOL)

        updates = learner.ledger.updates()
        assert [u.record.decision for u in updates] == [INITIAL, ACCEPTED, RETRY_WITH_REPLAY, ACCEPTED]
        details = outcome.record.details
        assert details["retry_of"] == updates[2].id and details["replayed_documents"] == ["eiffel"]
        own, replayed = len(details["train_sequences"]), len(first.record.details["train_sequences"])
        assert details["train"]["steps"] == (own + replayed) * KNOWLEDGE.inner_loop.epochs  # batch size 1
        assert updates[2].record.details["train"]["steps"] == own * KNOWLEDGE.inner_loop.epochs
        assert learner.ledger.decided_documents() == {"eiffel", "mongol"}


PROBE_TEXT = " Where does water boil at 100 degrees?\nAnswer: sea level\nQuestion 2: What colour is water?\nAnswer: blue\nQuestion 3: oops"


def test_a_document_without_questions_is_checked_on_the_probes_the_model_writes(tmp_path, tiny_model_dir, monkeypatch):
    original = InnerLoop.generate_with_base

    def writes_probes(self, prompts, generation):
        if len(prompts) == 1 and prompts[0].endswith("Question 1:"):
            return [Generation(PROBE_TEXT, 30, False)]
        return original(self, prompts, generation)

    monkeypatch.setattr(InnerLoop, "generate_with_base", writes_probes)
    with learner_on(tmp_path / "ledger", tiny_model_dir) as learner:
        outcome = learner.learn(WATER)
        later = learner.learn(EIFFEL)

    record = outcome.record
    assert [(p["question"], p["answers"]) for p in record.probes] == [
        ("Where does water boil at 100 degrees?", ["sea level"]),  # the model's own probe first
        (
            "Fill in the blank: Water boils at ____ degrees at sea level.",
            ["100"],
        ),  # then cloze probes up to --probe-count
    ]
    assert record.details["probe_source"] == "model (1) + cloze (1)"
    assert record.details["probe_counts"] == {"kept": 1, "malformed": 1, "dropped": 1}
    assert record.details["probes_dropped"][0]["reason"] == "answer not in the document"
    assert len(record.scores_before) == len(record.scores_after) == 2
    assert later.record.details["probe_source"] == "gold"  # gold questions win under probes=auto
    assert (
        later.record.details["retention_documents"] == ["water"] and len(later.record.retention_before) == 2
    )  # its two probes


@pytest.mark.parametrize("source", ["model", "cloze"])
def test_probe_sources_model_and_cloze_are_used_alone(tmp_path, tiny_model_dir, monkeypatch, source):
    original = InnerLoop.generate_with_base
    probe_prompts = []

    def writes_probes(self, prompts, generation):
        if len(prompts) == 1 and prompts[0].endswith("Question 1:"):
            probe_prompts.append(prompts[0])
            return [Generation(" Where is the tower?\nAnswer: Paris", 12, False)]
        return original(self, prompts, generation)

    monkeypatch.setattr(InnerLoop, "generate_with_base", writes_probes)
    with learner_on(tmp_path / "ledger", tiny_model_dir, probe_source=source) as learner:
        record = learner.learn(EIFFEL).record  # gold questions are ignored unless probes are gold or auto

    questions = [p["question"] for p in record.probes]
    if source == "model":
        assert (
            len(probe_prompts) == 1
            and questions == ["Where is the tower?"]
            and record.details["probe_source"] == "model"
        )
    else:
        assert not probe_prompts and record.details["probe_source"] == "cloze"
        assert questions == [
            "Fill in the blank: The Eiffel Tower is in ____.",
            "Fill in the blank: It was completed in ____ for the World's Fair.",
        ]


def test_unfaithful_sequences_are_dropped_and_the_document_always_kept():
    plan = TrainPlan(
        (
            TrainExample("Eiffel Tower\nThe tower was finished in 1889 in Paris."),
            TrainExample("Eiffel Tower\nIt was designed in Berlin in 1901."),
            TrainExample(f"Eiffel Tower\n{EIFFEL.context}"),
        )
    )

    kept, dropped = drop_unfaithful(plan, EIFFEL)

    assert [e.completion for e in kept.examples] == [plan.examples[0].completion, plan.examples[2].completion]
    assert [(d.line, d.reason) for d in dropped] == [
        (plan.examples[1].completion, "not in the document: '1901', 'Berlin'")
    ]
    assert kept.settings == plan.settings


def test_the_best_of_k_candidates_by_retention_aware_reward_is_the_update(tmp_path, tiny_model_dir):
    with learner_on(tmp_path / "ledger", tiny_model_dir, k=3) as learner:
        details = learner.learn(EIFFEL).record.details

    assert details["candidates"] == 3 and len(details["rewards"]) == 3
    assert details["chosen"] == details["rewards"].index(max(details["rewards"]))


def test_a_ledger_refuses_another_base_model_and_another_commit_mode(tmp_path, tiny_model_dir, tiny_tokenizer):
    folder = tmp_path / "ledger"
    with learner_on(folder, tiny_model_dir):
        pass
    other = tmp_path / "other-model"
    build_model(len(tiny_tokenizer), seed=1).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)

    with pytest.raises(LedgerError, match="started from another model"):
        with learner_on(folder, other):
            pass
    with pytest.raises(LedgerError, match="re-run with --commit merge"):
        with learner_on(folder, tiny_model_dir, commit="stack"):
            pass
