"""Tests for seal_lm.continual.stream: every input format, bad files and records reported without
stopping the stream, de-duplication and resume, and follow mode picking up new documents."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import text_id

from seal_lm.continual.stream import Document, Location, StreamError, read_stream
from seal_lm.domains.knowledge.data import DataError

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Eiffel_Tower",
            "paragraphs": [
                {
                    "context": "The Eiffel Tower was completed in 1889.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "When was it completed?",
                            "answers": [{"text": "1889"}, {"text": "in 1889"}],
                        }
                    ],
                },
                {"context": "It is 330 metres tall.", "qas": []},
            ],
        },
        {"title": "Broken", "paragraphs": [{"qas": []}]},  # no context
        {"title": "Water", "paragraphs": [{"context": "Water boils at 100 degrees.", "qas": []}]},
    ],
}


def documents(items) -> list[Document]:
    return [item for item in items if isinstance(item, Document)]


def errors(items) -> list[StreamError]:
    return [item for item in items if isinstance(item, StreamError)]


def write_jsonl(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------


def test_official_squad_json_gives_one_document_per_paragraph(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD))

    items = list(read_stream(path))

    assert [type(i).__name__ for i in items] == ["Document", "Document", "StreamError", "Document"]
    first, second, water = documents(items)
    assert (first.passage.title, first.passage.context, first.location) == (
        "Eiffel_Tower",
        "The Eiffel Tower was completed in 1889.",
        Location(str(path), 0),
    )
    assert first.id == first.passage.id == text_id(first.passage.context)
    assert [(q.id, q.question, q.answers) for q in first.passage.questions] == [
        ("q1", "When was it completed?", ("1889", "in 1889"))
    ]
    assert second.passage.questions == () and water.location.index == 3
    assert str(errors(items)[0]) == f"{path}#2: missing or empty 'text' (or 'context')."


def test_json_list_of_records_with_and_without_questions(tmp_path):
    path = tmp_path / "records.json"
    records = [
        {"title": "A", "text": "Alpha text.", "questions": [{"question": "What?", "answer": "alpha"}]},
        {"context": "Beta text."},  # no title, no questions: fine for a stream
        {"title": "C", "text": "Gamma text.", "questions": [{"question": "Who?"}]},  # no answer
        "not an object",
    ]
    path.write_text(json.dumps(records))

    items = list(read_stream(path))

    alpha, beta = (d.passage for d in documents(items))
    assert alpha.questions[0].answers == ("alpha",) and alpha.questions[0].id == f"{alpha.id[:12]}-q00"
    assert (alpha.title, alpha.context) == ("A", "Alpha text.")
    assert (beta.title, beta.context, beta.questions) == ("", "Beta text.", ())
    assert [(e.location.index, e.message) for e in errors(items)] == [
        (2, "question 0: missing gold answer ('answer' as text or 'answers' as a list)."),
        (3, "expected an object with 'text' (or 'context'), optional 'title' and 'questions'."),
    ]


def test_jsonl_bad_lines_are_reported_and_the_stream_goes_on(tmp_path):
    path = tmp_path / "docs.jsonl"
    write_jsonl(
        path, ['{"text": "One."}', "", "{not json", '{"text": ""}', '["a list"]', '{"text": "Two.", "title": "T"}']
    )

    items = list(read_stream(path))

    assert [d.passage.context for d in documents(items)] == ["One.", "Two."]
    assert [d.location.index for d in documents(items)] == [0, 5]  # line positions, blank lines counted
    assert [e.location.index for e in errors(items)] == [2, 3, 4]
    assert "not valid JSON" in errors(items)[0].message


def test_text_and_markdown_files_are_one_document_each(tmp_path):
    (tmp_path / "a_note.txt").write_text("Plain text about rivers.\n")
    (tmp_path / "b_page.md").write_text("Intro line.\n\n## The Nile ##\n\nThe Nile is long.\n\n# Later heading\n")

    note, page = documents(read_stream(tmp_path))

    assert (note.passage.title, note.passage.context, note.location) == (
        "a_note",
        "Plain text about rivers.",
        Location(str(tmp_path / "a_note.txt"), 0),
    )
    assert page.passage.title == "The Nile" and page.passage.context.startswith("Intro line.")


def test_a_folder_with_bad_files_reports_each_and_loses_nothing(tmp_path):
    (tmp_path / "1.json").write_text("{broken")
    (tmp_path / "2.txt").write_bytes(b"caf\xe9 latin-1 text")
    (tmp_path / "3.pdf").write_bytes(b"%PDF")
    (tmp_path / "4.txt").write_text("   \n")
    (tmp_path / "5.md").write_text("# Fine\nA good document.")
    (tmp_path / ".6.md.partial").write_text("# Hidden\nBeing written.")  # hidden: skipped
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "7.txt").write_text("In a sub-folder: not part of the folder's stream.")

    items = list(read_stream(tmp_path))

    assert [d.passage.title for d in documents(items)] == ["Fine"]
    assert [(e.location.path.rsplit("/", 1)[-1], e.message.split(" (")[0]) for e in errors(items)] == [
        ("1.json", "not valid JSON"),
        ("2.txt", "not UTF-8 text"),
        ("3.pdf", "unsupported file type '.pdf'; expected one of .json, .jsonl, .txt, .md, .markdown."),
        ("4.txt", "empty file."),
    ]


def test_a_glob_pattern_selects_files_in_name_order_recursively(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("Second.")
    (tmp_path / "a.txt").write_text("First.")
    (tmp_path / "skip.md").write_text("Not matched.")

    texts = [d.passage.context for d in documents(read_stream(f"{tmp_path}/**/*.txt"))]

    assert texts == ["First.", "Second."]


def test_a_source_that_matches_nothing_is_an_error_unless_following(tmp_path):
    with pytest.raises(DataError, match="no such file, or no files match"):
        list(read_stream(tmp_path / "missing.jsonl"))
    stop = threading.Event()
    stop.set()
    assert list(read_stream(tmp_path / "missing.jsonl", follow=True, stop=stop)) == []


# ---------------------------------------------------------------------------------------------
# Duplicates and resume
# ---------------------------------------------------------------------------------------------


def test_a_document_is_yielded_once_and_seen_ids_are_skipped(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [json.dumps({"text": t}) for t in ("One.", "Two.", "One.")])
    (tmp_path / "b.txt").write_text("Two.\n")  # the same text again, in another file
    (tmp_path / "c.txt").write_text("Three.")

    first_pass = documents(read_stream(tmp_path))
    assert [d.passage.context for d in first_pass] == ["One.", "Two.", "Three."]

    resumed = documents(read_stream(tmp_path, seen=[first_pass[0].id, first_pass[1].id]))
    assert [d.passage.context for d in resumed] == ["Three."]


def test_stop_is_checked_before_each_document(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [json.dumps({"text": f"Doc {k}."}) for k in range(5)])
    taken = []
    for item in read_stream(tmp_path, stop=lambda: len(taken) >= 2):
        taken.append(item)
    assert [d.passage.context for d in taken] == ["Doc 0.", "Doc 1."]


# ---------------------------------------------------------------------------------------------
# Follow mode
# ---------------------------------------------------------------------------------------------


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the stream"
        time.sleep(0.01)


def test_follow_picks_up_new_files_and_appended_lines_until_stopped(tmp_path):
    feed = tmp_path / "feed.jsonl"
    write_jsonl(feed, [json.dumps({"text": "Old line."})])
    stop = threading.Event()
    received: list = []

    def consume():
        for item in read_stream(tmp_path, follow=True, stop=stop, poll_interval=0.02):
            received.append(item)

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        wait_for(lambda: len(received) == 1)

        (tmp_path / "new.md").write_text("# New\nA new file.")
        wait_for(lambda: len(received) == 2)

        with open(feed, "a") as f:  # a line is read only once it is complete
            f.write('{"text": "Appended')
            f.flush()
            time.sleep(0.1)
            assert len(received) == 2
            f.write(' line."}\n')
        wait_for(lambda: len(received) == 3)

        (tmp_path / "new.md").touch()  # re-read (new signature), but nothing new: no duplicate
        (tmp_path / "copy.txt").write_text("# New\nA new file.\n")  # the same text under another name
        time.sleep(0.2)
    finally:
        stop.set()
        consumer.join(timeout=5)
    assert not consumer.is_alive()
    assert [d.passage.context for d in documents(received)] == ["Old line.", "# New\nA new file.", "Appended line."]
    assert errors(received) == []
