"""Tests for seal_lm.loops.report: the results table computed from hand-made unit records."""

from __future__ import annotations

import pytest

from seal_lm.loops.report import markdown_table, per_question_scores, summarize


def record(
    context,
    condition,
    correct,
    *,
    sample=0,
    f1=None,
    exact=None,
    answers=None,
    rejected=None,
    self_edit=None,
    train=None,
    seconds=1.0,
    judge=None,
):
    """One unit record as ``run_conditions`` writes it; ``correct`` lists one 0/1 per question."""
    f1 = f1 if f1 is not None else [float(c) for c in correct]
    exact = exact if exact is not None else [bool(c) for c in correct]
    answers = answers if answers is not None else ["some answer"] * len(correct)
    grades = [
        {"correct": bool(c), "exact_match": bool(e), "f1": f, "answer": a}
        for c, e, f, a in zip(correct, exact, f1, answers, strict=True)
    ]
    if judge is not None:
        for grade, verdict in zip(grades, judge, strict=True):
            grade["judge"] = verdict
    return {
        "unit": f"{context}/{condition}/{sample}",
        "context_id": context,
        "condition": condition,
        "sample": sample,
        "self_edit": self_edit,
        "rejected": rejected,
        "train": train,
        "grades": grades,
        "seconds": seconds,
    }


# Three passages with 2, 1 and 3 questions. Question-weighted and passage-weighted means differ.
PASSAGE = {"c1": [1, 0], "c2": [1], "c3": [0, 0, 1]}  # 3 / 6 correct
BASE = {"c1": [0, 0], "c2": [0], "c3": [1, 0, 0]}  # 1 / 6 correct
SELF_EDIT = {  # two samples per passage; per-question means 0.5, 1 | 0.5 | 1, 0, 0.5 → 3.5 / 6
    0: {"c1": [1, 1], "c2": [0], "c3": [1, 0, 0]},
    1: {"c1": [0, 1], "c2": [1], "c3": [1, 0, 1]},
}


def table_records():
    records = [record(c, "base", v, answers=["one two"] * len(v)) for c, v in BASE.items()]
    records += [
        record(c, "passage", v, train={"sequences": ["title\npassage"], "tokens": 20}, seconds=2.0)
        for c, v in PASSAGE.items()
    ]
    for sample, scores in SELF_EDIT.items():
        for c, v in scores.items():
            rejected = "no usable lines" if (c, sample) == ("c2", 0) else None
            records.append(
                record(
                    c,
                    "self-edit",
                    v,
                    sample=sample,
                    rejected=rejected,
                    self_edit={"text": "1. a fact here", "truncated": sample == 1 and c != "c2"},
                    train=None if rejected else {"sequences": ["t\na fact here", "t\npassage"], "tokens": 40},
                )
            )
    # "external" has exactly the passage condition's grades: its difference must be exactly 0.
    records += [
        record(c, "external", v, sample=0, self_edit={"text": "x", "source": "external"}) for c, v in PASSAGE.items()
    ]
    return records


@pytest.fixture(scope="module")
def summary():
    return summarize(table_records(), bootstrap_samples=500, seed=0)


def test_rows_follow_the_order_conditions_first_appear(summary):
    assert list(summary["conditions"]) == ["base", "passage", "self-edit", "external"]
    assert summary["bootstrap_samples"] == 500


def test_accuracy_is_the_question_weighted_mean(summary):
    """3 of 6 questions right; averaging per passage first would give (1/2 + 1 + 1/3) / 3 instead."""
    passage = summary["conditions"]["passage"]
    assert passage["accuracy"] == pytest.approx(3 / 6)
    assert passage["contexts"] == 3
    assert passage["questions"] == 6
    assert passage["units"] == 3
    assert summary["conditions"]["base"]["accuracy"] == pytest.approx(1 / 6)


def test_samples_are_averaged_per_question(summary):
    """k=2 samples of 6 questions count as 6 questions, not 12."""
    row = summary["conditions"]["self-edit"]
    assert row["accuracy"] == pytest.approx(3.5 / 6)
    assert row["questions"] == 6
    assert row["units"] == 6


def test_unequal_sample_counts_weigh_each_question_once():
    """A question sampled 3 times counts as much as one sampled once (pooling would give 2/4)."""
    records = [
        record("c1", "self-edit", [1], sample=0),
        record("c1", "self-edit", [0], sample=1),
        record("c1", "self-edit", [0], sample=2),
        record("c2", "self-edit", [1], sample=0),
    ]
    scores = per_question_scores(records, "correct")
    assert scores["self-edit"]["c1"] == {0: pytest.approx(1 / 3)}
    assert scores["self-edit"]["c2"] == {0: 1.0}
    row = summarize(records, bootstrap_samples=200)["conditions"]["self-edit"]
    assert row["accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    assert row["questions"] == 2


def test_exact_match_and_f1_are_means_over_questions():
    records = [
        record("c1", "passage", [1, 0], exact=[1, 0], f1=[1.0, 0.5]),
        record("c2", "passage", [1], exact=[0], f1=[0.25]),
        record("c3", "passage", [0, 0, 1], exact=[0, 0, 1], f1=[0.0, 0.0, 1.0]),
    ]
    row = summarize(records, bootstrap_samples=200)["conditions"]["passage"]
    assert row["exact_match"] == pytest.approx(2 / 6)
    assert row["f1"] == pytest.approx(2.75 / 6)
    assert row["accuracy"] == pytest.approx(3 / 6)


def test_difference_against_passage_and_its_interval(summary):
    rows = summary["conditions"]
    assert "vs_reference" not in rows["passage"]
    for condition, expected in [("base", (1 - 3) / 6), ("self-edit", (3.5 - 3) / 6)]:
        diff = rows[condition]["vs_reference"]
        assert diff["difference"] == pytest.approx(expected)
        low, high = diff["ci95"]
        assert low <= diff["difference"] <= high
        assert low < high  # passages disagree, so the interval has width


def test_a_condition_identical_to_passage_differs_by_exactly_zero(summary):
    diff = summary["conditions"]["external"]["vs_reference"]
    assert diff["difference"] == 0.0
    assert diff["ci95"] == [0.0, 0.0]


def test_no_passage_condition_means_no_differences():
    records = [record(c, "base", v) for c, v in BASE.items()]
    row = summarize(records, bootstrap_samples=200)["conditions"]["base"]
    assert "vs_reference" not in row


def test_rejected_and_truncated_self_edits_are_counted(summary):
    rows = summary["conditions"]
    assert rows["self-edit"]["rejected_self_edits"] == 1
    assert rows["self-edit"]["truncated_self_edits"] == 2  # sample 1 of c1 and c3
    assert rows["passage"]["rejected_self_edits"] == 0
    assert rows["external"]["truncated_self_edits"] == 0


def test_training_answer_and_time_statistics(summary):
    rows = summary["conditions"]
    assert rows["passage"]["mean_trained_tokens"] == pytest.approx(20)
    assert rows["passage"]["mean_train_sequences"] == pytest.approx(1)
    assert rows["self-edit"]["mean_trained_tokens"] == pytest.approx(40)  # the rejected unit did not train
    assert rows["self-edit"]["mean_train_sequences"] == pytest.approx(2)
    assert rows["base"]["mean_trained_tokens"] == 0.0
    assert rows["base"]["mean_answer_words"] == pytest.approx(2)
    assert rows["passage"]["mean_unit_seconds"] == pytest.approx(2.0)


def test_standard_error_needs_more_than_one_passage(summary):
    assert summary["conditions"]["passage"]["accuracy_se"] > 0
    single = summarize([record("c1", "passage", [1, 0])], bootstrap_samples=200)
    assert single["conditions"]["passage"]["accuracy_se"] is None


def test_judge_verdicts_are_summarized_when_present():
    records = [
        record("c1", "passage", [1, 0], judge=[True, True]),
        record("c2", "passage", [0], judge=[False]),
    ]
    summary = summarize(records, bootstrap_samples=200)
    assert summary["conditions"]["passage"]["judge_accuracy"] == pytest.approx(2 / 3)
    assert "judge" in markdown_table(summary).splitlines()[0]


def test_summary_is_reproducible_for_a_seed():
    assert summarize(table_records(), 300, seed=5) == summarize(table_records(), 300, seed=5)


def test_markdown_table_has_a_header_and_one_row_per_condition(summary):
    lines = markdown_table(summary).rstrip("\n").split("\n")
    header, separator, rows = lines[0], lines[1], lines[2:]

    assert "condition" in header and "accuracy" in header and "F1" in header
    assert "judge" not in header  # no judge verdicts in these records
    assert set(separator) <= set("|-")
    columns = header.count("|")
    assert separator.count("|") == columns
    assert [row.split("|")[1].strip() for row in rows] == ["base", "passage", "self-edit", "external"]
    assert all(row.count("|") == columns for row in rows)

    cells = {row.split("|")[1].strip(): [c.strip() for c in row.split("|")[2:-1]] for row in rows}
    assert cells["passage"][:2] == ["6", "50.0"]  # questions, accuracy in percent
    assert any(cell.startswith("-33.3 [") for cell in cells["base"])
    assert any(cell.startswith("+0.0 [+0.0, +0.0]") for cell in cells["external"])
