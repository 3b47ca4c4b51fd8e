"""Tests for seal_lm.domains.knowledge.data: loading SQuAD-style passages in three formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import text_id

from seal_lm.domains.knowledge.data import DataError, Passage, Question, load_passages, short_id, to_official_squad

EVAL200 = Path(__file__).parents[2] / "shared/data/squad/eval200.json"

# ---------------------------------------------------------------------------------------------
# Sample data
# ---------------------------------------------------------------------------------------------

# The official SQuAD v1.1 layout: articles -> paragraphs -> qas, several gold answers per
# question (duplicates included, as in the real dev set), and explicit question ids.
OFFICIAL = {
    "version": "1.1",
    "data": [
        {
            "title": "Super_Bowl_50",
            "paragraphs": [
                {
                    "context": "Super Bowl 50 was won by the Denver Broncos.",
                    "qas": [
                        {
                            "id": "56be4db0acb8001400a502ec",
                            "question": "Which team won Super Bowl 50?",
                            "answers": [
                                {"answer_start": 29, "text": "Denver Broncos"},
                                {"answer_start": 29, "text": "Denver Broncos"},
                                {"answer_start": 36, "text": "Broncos"},
                            ],
                        }
                    ],
                },
                {
                    "context": "The game was played at Levi's Stadium in Santa Clara.",
                    "qas": [
                        {"id": "q-venue", "question": "Where was it played?", "answers": [{"text": "Levi's Stadium"}]},
                        {"id": "q-city", "question": "In which city?", "answers": [{"text": "Santa Clara"}]},
                    ],
                },
            ],
        },
        {
            "title": "Warsaw",
            "paragraphs": [
                {
                    "context": "Warsaw is the capital of Poland.",
                    "qas": [
                        {"id": "q-capital", "question": "What is Warsaw?", "answers": [{"text": "capital of Poland"}]}
                    ],
                }
            ],
        },
    ],
}

# The flattened layout of SEAL's eval200.json; "answer" may also be a list, and "answers" is accepted.
FLAT = [
    {
        "title": "Eiffel Tower",
        "context": "The Eiffel Tower was completed in 1889 in Paris.",
        "questions": [
            {"question": "When was the tower completed?", "answer": "1889"},
            {"question": "Where is it?", "answer": ["Paris", "in Paris"]},
        ],
    },
    {
        "id": "custom-id",
        "title": "Nile",
        "context": "The Nile flows north into the Mediterranean Sea.",
        "questions": [{"id": "nile-1", "question": "Which way does the Nile flow?", "answers": ["north"]}],
    },
]


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The three formats
# ---------------------------------------------------------------------------------------------


def test_official_squad_keeps_every_paragraph_question_id_and_gold_answer(tmp_path):
    passages = load_passages(write_json(tmp_path / "dev.json", OFFICIAL))

    assert [p.id for p in passages] == [
        text_id("Super Bowl 50 was won by the Denver Broncos."),
        text_id("The game was played at Levi's Stadium in Santa Clara."),
        text_id("Warsaw is the capital of Poland."),
    ]
    assert [p.title for p in passages] == ["Super_Bowl_50", "Super_Bowl_50", "Warsaw"]
    assert passages[0].context == "Super Bowl 50 was won by the Denver Broncos."
    assert passages[0].questions == (
        Question(
            id="56be4db0acb8001400a502ec",
            question="Which team won Super Bowl 50?",
            answers=("Denver Broncos", "Denver Broncos", "Broncos"),
        ),
    )
    assert [q.id for q in passages[1].questions] == ["q-venue", "q-city"]
    assert passages[1].questions[1].answers == ("Santa Clara",)
    assert passages[2].questions[0].answers == ("capital of Poland",)


def test_flat_json_list_accepts_answer_string_or_list_and_assigns_ids_from_the_text(tmp_path):
    passages = load_passages(write_json(tmp_path / "flat.json", FLAT))

    eiffel = text_id("The Eiffel Tower was completed in 1889 in Paris.")
    assert passages == [
        Passage(
            id=eiffel,
            title="Eiffel Tower",
            context="The Eiffel Tower was completed in 1889 in Paris.",
            questions=(
                Question(f"{eiffel[:12]}-q00", "When was the tower completed?", ("1889",)),
                Question(f"{eiffel[:12]}-q01", "Where is it?", ("Paris", "in Paris")),
            ),
        ),
        Passage(
            id=text_id("The Nile flows north into the Mediterranean Sea."),  # the record's own "id" is not used
            title="Nile",
            context="The Nile flows north into the Mediterranean Sea.",
            questions=(Question("nile-1", "Which way does the Nile flow?", ("north",)),),
        ),
    ]


def test_text_and_title_are_stripped_before_the_id_is_taken(tmp_path):
    record = {
        "title": " Eiffel Tower\n",
        "text": "\n  The Eiffel Tower was completed in 1889 in Paris. ",
        "questions": FLAT[0]["questions"],
    }

    (passage,) = load_passages(write_json(tmp_path / "flat.json", [record]))

    assert (passage.title, passage.context) == ("Eiffel Tower", "The Eiffel Tower was completed in 1889 in Paris.")
    assert passage == load_passages(write_json(tmp_path / "plain.json", FLAT[:1]))[0]
    assert short_id(passage.id) == passage.id[:12] and passage.questions[0].id.startswith(short_id(passage.id))


def test_a_file_holding_a_passage_twice_is_refused_naming_both_records(tmp_path):
    again = {"title": "Another title", "context": "  " + FLAT[0]["context"], "questions": FLAT[1]["questions"]}
    path = write_json(tmp_path / "flat.json", [FLAT[0], FLAT[1], again])

    with pytest.raises(DataError) as info:
        load_passages(path)
    assert str(info.value) == f"{path}: record 2 repeats the passage of record 0; remove one of them."


def test_a_passage_without_title_is_fine(tmp_path):
    record = {key: value for key, value in FLAT[0].items() if key != "title"}

    (passage,) = load_passages(write_json(tmp_path / "flat.json", [record]))

    assert passage.title == "" and passage.id == text_id(FLAT[0]["context"])


def test_jsonl_gives_the_same_passages_as_the_json_list(tmp_path):
    path = write_jsonl(tmp_path / "flat.jsonl", FLAT)
    path.write_text(path.read_text() + "\n   \n", encoding="utf-8")  # trailing blank lines are ignored

    assert load_passages(path) == load_passages(write_json(tmp_path / "flat.json", FLAT))


def test_jsonl_content_is_detected_under_another_suffix(tmp_path):
    """A file that is not ``.json``/``.jsonl`` is parsed by content: JSONL falls back to line mode."""
    path = write_jsonl(tmp_path / "flat.txt", FLAT)

    assert [p.title for p in load_passages(path)] == ["Eiffel Tower", "Nile"]


def test_accepts_str_path(tmp_path):
    path = write_json(tmp_path / "flat.json", FLAT)

    assert load_passages(str(path)) == load_passages(path)


@pytest.mark.skipif(not EVAL200.is_file(), reason=f"{EVAL200} not available")
def test_real_eval200_has_200_passages_and_974_questions():
    passages = load_passages(EVAL200)

    assert len(passages) == 200
    assert sum(len(p.questions) for p in passages) == 974
    assert passages[0].title == "Genghis Khan"
    assert passages[0].questions[0].answers == ("fragmentation",)
    assert len({q.id for p in passages for q in p.questions}) == 974  # ids are unique


# ---------------------------------------------------------------------------------------------
# Error messages: a DataError naming the file and what is wrong with which record
# ---------------------------------------------------------------------------------------------


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.json"

    with pytest.raises(DataError, match="no such file") as info:
        load_passages(path)
    assert str(path) in str(info.value)


def test_a_directory_is_not_a_data_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_passages(tmp_path)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"title": "x",\n   oops}\n]\n', encoding="utf-8")

    with pytest.raises(DataError, match="not valid JSON") as info:
        load_passages(path)
    assert "line 3" in str(info.value)
    assert str(path) in str(info.value)


def test_json_that_is_neither_official_nor_a_list(tmp_path):
    with pytest.raises(DataError, match="expected a SQuAD v1.1 object with 'data' or a list"):
        load_passages(write_json(tmp_path / "odd.json", {"passages": []}))


def test_record_without_questions_names_file_and_record(tmp_path):
    records = [FLAT[0], {"title": "Empty", "context": "Nothing is asked here.", "questions": []}]
    path = write_json(tmp_path / "flat.json", records)

    with pytest.raises(DataError, match="has no questions") as info:
        load_passages(path)
    message = str(info.value)
    assert str(path) in message
    assert "record 1" in message
    assert "'Empty'" in message


def test_record_with_questions_key_missing(tmp_path):
    path = write_json(tmp_path / "flat.json", [{"title": "T", "context": "Some text."}])

    with pytest.raises(DataError, match=r"record 0 .*has no questions"):
        load_passages(path)


def test_missing_context(tmp_path):
    path = write_json(tmp_path / "flat.json", [{"title": "T", "questions": [{"question": "Q?", "answer": "A"}]}])

    with pytest.raises(DataError, match=r"record 0: missing or empty 'text' \(or 'context'\)"):
        load_passages(path)


def test_blank_context_counts_as_missing(tmp_path):
    path = write_json(
        tmp_path / "flat.json", [{"title": "T", "context": "  ", "questions": [{"question": "Q?", "answer": "A"}]}]
    )

    with pytest.raises(DataError, match="'context'"):
        load_passages(path)


@pytest.mark.parametrize(
    "question", [{"question": "Q?"}, {"question": "Q?", "answer": ""}, {"question": "Q?", "answer": []}]
)
def test_missing_answer_names_record_and_question(tmp_path, question):
    good = {"question": "Fine?", "answer": "yes"}
    path = write_json(tmp_path / "flat.json", [{"title": "T", "context": "C.", "questions": [good, question]}])

    with pytest.raises(DataError, match="missing gold answer") as info:
        load_passages(path)
    assert f"{path}: record 0: question 1: missing gold answer" in str(info.value)


def test_missing_answer_in_official_format(tmp_path):
    document = {
        "version": "1.1",
        "data": [
            {"title": "T", "paragraphs": [{"context": "C.", "qas": [{"id": "x", "question": "Q?", "answers": []}]}]}
        ],
    }

    with pytest.raises(DataError, match=r"record 0: question 0: missing gold answer"):
        load_passages(write_json(tmp_path / "dev.json", document))


def test_official_paragraph_without_questions(tmp_path):
    document = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "C.", "qas": []}]}]}

    with pytest.raises(DataError, match=r"record 0 \('T'\): has no questions"):
        load_passages(write_json(tmp_path / "dev.json", document))


def test_official_with_no_paragraphs(tmp_path):
    with pytest.raises(DataError, match="contains no passages"):
        load_passages(write_json(tmp_path / "dev.json", {"version": "1.1", "data": []}))


def test_official_article_that_is_not_an_object_is_a_data_error(tmp_path):
    """The module promises every problem is a DataError; a malformed official file must not crash."""
    path = write_json(tmp_path / "dev.json", {"version": "1.1", "data": ["not an article"]})

    with pytest.raises(DataError) as info:
        load_passages(path)
    assert str(info.value) == f"{path}: data[0] is not an article with a 'paragraphs' list."


def test_non_object_record(tmp_path):
    path = write_json(tmp_path / "flat.json", ["just a string"])

    with pytest.raises(DataError, match="record 0: expected an object"):
        load_passages(path)


def test_empty_list_has_no_passages(tmp_path):
    with pytest.raises(DataError, match="contains no passages"):
        load_passages(write_json(tmp_path / "flat.json", []))


def test_bad_jsonl_line_names_the_line_number(tmp_path):
    path = tmp_path / "flat.jsonl"
    path.write_text(json.dumps(FLAT[0]) + "\n{not json\n" + json.dumps(FLAT[1]) + "\n", encoding="utf-8")

    with pytest.raises(DataError, match="line 2 is not valid JSON") as info:
        load_passages(path)
    assert str(path) in str(info.value)


def test_bad_line_in_jsonl_under_another_suffix(tmp_path):
    path = tmp_path / "flat.txt"
    path.write_text(json.dumps(FLAT[0]) + "\n" + json.dumps(FLAT[1]) + "\n]\n", encoding="utf-8")

    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        load_passages(path)


# ---------------------------------------------------------------------------------------------
# to_official_squad
# ---------------------------------------------------------------------------------------------


def test_to_official_squad_layout():
    passages = [Passage("p", "Title", "Context.", (Question("q1", "Q?", ("a", "b")),))]

    assert to_official_squad(passages) == {
        "version": "1.1",
        "data": [
            {
                "title": "Title",
                "paragraphs": [
                    {
                        "context": "Context.",
                        "qas": [{"id": "q1", "question": "Q?", "answers": [{"text": "a"}, {"text": "b"}]}],
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize("source", ["flat", "official"])
def test_round_trip_through_official_squad_keeps_every_id(tmp_path, source):
    original = load_passages(write_json(tmp_path / "in.json", FLAT if source == "flat" else OFFICIAL))

    reloaded = load_passages(write_json(tmp_path / "out.json", to_official_squad(original)))

    assert reloaded == original
