"""One record parser and one id rule: ``load_passages`` (seal eval, seal train) and ``read_stream``
(seal adapt) read the same file into the same passages, ids included, and say the same about a bad record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import text_id
from test_knowledge_data import FLAT

from seal_lm.continual.stream import Document, StreamError, read_stream
from seal_lm.domains.knowledge.data import DataError, Passage, load_passages

# Three passages: test_knowledge_data's two (the second with a passage "id", which is not used, and a
# question with its own id), that second passage with a question of SQuAD's answer form, and a third.
RECORDS = [
    FLAT[0],
    FLAT[1] | {"questions": [*FLAT[1]["questions"], {"question": "Into which sea?", "answers": [{"text": "the sea"}]}]},
    {
        "title": "Warsaw",
        "context": "Warsaw is the capital of Poland.",
        "questions": [{"question": "What is Warsaw?", "answer": "the capital of Poland"}],
    },
]


def as_official_squad(records: list[dict]) -> dict:
    """The records as an official SQuAD v1.1 file: the first two in one article, the third in another."""

    def paragraph(record: dict) -> dict:
        qas = []
        for q in record["questions"]:
            answers = q.get("answers", q.get("answer"))
            answers = [answers] if isinstance(answers, str) else answers
            qas.append(
                {"question": q["question"], "answers": [a if isinstance(a, dict) else {"text": a} for a in answers]}
                | ({"id": q["id"]} if "id" in q else {})
            )
        return {"context": record["context"], "qas": qas}

    return {
        "version": "1.1",
        "data": [
            {"title": "Eiffel Tower", "paragraphs": [paragraph(records[0])]},
            {"title": "Nile", "paragraphs": [paragraph(records[1])]},
            {"title": "Warsaw", "paragraphs": [paragraph(records[2])]},
        ],
    }


def write(folder: Path, name: str, records: list[dict]) -> Path:
    """``records`` in the format ``name``'s suffix (and name) asks for: a JSON list, JSONL, or official SQuAD."""
    path = folder / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif name.startswith("squad"):
        path.write_text(json.dumps(as_official_squad(records)), encoding="utf-8")
    else:
        path.write_text(json.dumps(records), encoding="utf-8")
    return path


def streamed(path: Path) -> list[Document | StreamError]:
    return list(read_stream(path))


def streamed_passages(path: Path) -> list[Passage]:
    return [item.passage for item in streamed(path) if isinstance(item, Document)]


def ids(passages: list[Passage]) -> list[tuple[str, tuple[str, ...]]]:
    return [(p.id, tuple(q.id for q in p.questions)) for p in passages]


@pytest.mark.parametrize("name", ["list.json", "lines.jsonl", "squad.json"])
def test_a_file_gives_the_same_passages_and_ids_to_eval_and_to_adapt(tmp_path, name):
    path = write(tmp_path, name, RECORDS)

    loaded = load_passages(path)

    assert streamed_passages(path) == loaded
    eiffel, nile, warsaw = (text_id(r["context"]) for r in RECORDS)
    assert (
        ids(loaded)
        == [
            (eiffel, (f"{eiffel[:12]}-q00", f"{eiffel[:12]}-q01")),
            (nile, ("nile-1", f"{nile[:12]}-q01")),  # the record's "id": "custom-id" is not the passage's
            (warsaw, (f"{warsaw[:12]}-q00",)),
        ]
    )


def test_the_three_formats_give_the_same_passages(tmp_path):
    formats = [load_passages(write(tmp_path, name, RECORDS)) for name in ("list.json", "lines.jsonl", "squad.json")]

    assert formats[0] == formats[1] == formats[2]


@pytest.mark.parametrize("name", ["list.json", "lines.jsonl", "squad.json"])
def test_a_repeated_passage_is_refused_by_eval_and_learned_once_by_adapt(tmp_path, name):
    again = RECORDS[0] | {"context": f"  {RECORDS[0]['context']}\n"}  # the same text once stripped
    path = write(tmp_path, name, [RECORDS[0], RECORDS[1], again])

    with pytest.raises(DataError) as info:
        load_passages(path)

    assert str(info.value) == f"{path}: record 2 repeats the passage of record 0; remove one of them."
    assert [p.context for p in streamed_passages(path)] == [RECORDS[0]["context"], RECORDS[1]["context"]]


BAD_RECORDS = {
    "not an object": "a string",
    "no text": {"title": "T", "questions": [{"question": "Q?", "answer": "A"}]},
    "blank text": {"text": "   ", "questions": [{"question": "Q?", "answer": "A"}]},
    "title not text": {"title": 3, "text": "Some text.", "questions": [{"question": "Q?", "answer": "A"}]},
    "questions not a list": {"text": "Some text.", "questions": "Q?"},
    "question not an object": {"text": "Some text.", "questions": ["Q?"]},
    "empty question": {"text": "Some text.", "questions": [{"question": " ", "answer": "A"}]},
    "no answer": {"text": "Some text.", "questions": [{"question": "Q?", "answer": "A"}, {"question": "Q2?"}]},
    "blank answers": {"text": "Some text.", "questions": [{"question": "Q?", "answers": ["", {"text": " "}]}]},
}


@pytest.mark.parametrize("name", ["list.json", "lines.jsonl"])
@pytest.mark.parametrize("bad", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_a_malformed_record_gets_the_same_message_from_eval_and_from_adapt(tmp_path, name, bad):
    path = write(tmp_path, name, [RECORDS[0], bad])

    with pytest.raises(DataError) as info:
        load_passages(path)
    (error,) = [item for item in streamed(path) if isinstance(item, StreamError)]

    assert error.location.index == 1
    assert str(info.value) == f"{path}: record 1: {error.message}"


def test_a_malformed_squad_paragraph_gets_the_same_message_from_eval_and_from_adapt(tmp_path):
    squad = as_official_squad(RECORDS)
    squad["data"][1]["paragraphs"][0]["qas"][0]["answers"] = []
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad), encoding="utf-8")

    with pytest.raises(DataError) as info:
        load_passages(path)
    items = streamed(path)

    assert [type(item).__name__ for item in items] == ["Document", "StreamError", "Document"]
    assert str(info.value) == f"{path}: record 1: {items[1].message}"
    assert items[1].message == "question 0: missing gold answer ('answer' as text or 'answers' as a list)."


def test_a_squad_file_that_is_not_a_list_of_articles_is_one_error_with_the_same_message(tmp_path):
    squad = as_official_squad(RECORDS)
    squad["data"][1] = {"title": "No paragraphs"}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad), encoding="utf-8")

    with pytest.raises(DataError) as info:
        load_passages(path)
    (error,) = streamed(path)

    assert isinstance(error, StreamError) and error.location.index is None
    assert str(info.value) == str(error) == f"{path}: data[1] is not an article with a 'paragraphs' list."
