"""Tests for seal_lm.continual.probes: model-written question/answer pairs parsed from the shapes small
models produce, malformed parts counted, and only probes the document supports kept."""

from __future__ import annotations

import pytest

from seal_lm.continual.probes import PROBE_PROMPT, cloze_probes, parse_probes, probe_prompt
from seal_lm.domains.knowledge.data import Question
from seal_lm.model.prompting import PromptFormatter

DOCUMENT = (
    "The Eiffel Tower was completed on 31 March 1889 in Paris. Gustave Eiffel's company built it for the "
    "World's Fair. It is 330 metres tall."
)


def kept(result) -> list[tuple[str, str]]:
    return [(q.question, q.answers[0]) for q in result.probes]


def test_the_prompt_shows_the_document_and_ends_inside_the_first_question(tiny_tokenizer):
    for chat in (False, True):
        prompt = probe_prompt(PromptFormatter(tiny_tokenizer, chat), "Eiffel Tower", DOCUMENT, 4)
        assert DOCUMENT in prompt and "Eiffel Tower" in prompt and "4 questions" in prompt
        assert prompt.endswith("Question 1:")
    assert "{count}" in PROBE_PROMPT.plain and "{count}" in PROBE_PROMPT.user


def test_pairs_on_separate_lines_continuing_the_prompt():
    text = " When was the tower completed?\nAnswer: 31 March 1889.\nQuestion 2: Where is it?\nAnswer: Paris\n"

    result = parse_probes(text, DOCUMENT, id_prefix="doc")

    assert result.probes == (
        Question("doc-m00", "When was the tower completed?", ("31 March 1889",)),
        Question("doc-m01", "Where is it?", ("Paris",)),
    )
    assert (result.malformed, result.dropped) == (0, ())


def test_inline_numbered_short_and_markdown_forms():
    text = (
        "Question 1: Where is it? Answer: Paris\n"
        "2. Q: How tall is it?\n   A: **330 metres**\n"
        "**Question 3:** Who built it?\n**Answer:** Gustave Eiffel's company\n"
        "q4: For what event?\na4: `World's Fair`"
    )

    result = parse_probes(text, DOCUMENT, opens_with_question=False)

    assert kept(result) == [
        ("Where is it?", "Paris"),
        ("How tall is it?", "330 metres"),
        ("Who built it?", "Gustave Eiffel's company"),
        ("For what event?", "World's Fair"),
    ]
    assert result.malformed == 0


def test_a_preamble_is_ignored_only_when_the_text_does_not_continue_a_question():
    text = "Here are some questions about the passage.\nQuestion 1: Where is it?\nAnswer: Paris"
    assert kept(parse_probes(text, DOCUMENT, opens_with_question=False)) == [("Where is it?", "Paris")]
    continued = parse_probes(text, DOCUMENT)  # the preamble is then question 1, which got no answer
    assert kept(continued) == [("Where is it?", "Paris")] and continued.malformed == 1


def test_malformed_parts_are_dropped_and_counted():
    text = (
        " Where is it?\n"  # question 1 with no answer
        "Question 2: How tall is it?\nAnswer: 330 metres\n"
        "Answer: Paris\n"  # an answer without a question
        "Question 3: Who built it?\nAnswer:\n"  # an empty answer
        "Question 4: When was it completed?"  # no answer at the end
    )

    result = parse_probes(text, DOCUMENT)

    assert kept(result) == [("How tall is it?", "330 metres")]
    assert result.malformed == 4
    assert result.summary() == {"kept": 1, "malformed": 4, "dropped": 0}


def test_the_last_pair_of_a_truncated_generation_is_dropped():
    text = " Where is it?\nAnswer: Paris\nQuestion 2: How tall is it?\nAnswer: 330"
    assert kept(parse_probes(text, DOCUMENT)) == [("Where is it?", "Paris"), ("How tall is it?", "330")]
    truncated = parse_probes(text, DOCUMENT, truncated=True)
    assert kept(truncated) == [("Where is it?", "Paris")] and truncated.malformed == 1


def test_only_answers_the_document_supports_are_kept_each_with_its_reason():
    text = (
        "Question 1: What is it made of?\nAnswer: wrought iron\n"  # not in the document
        "Question 2: Where is the Eiffel Tower of Paris?\nAnswer: Paris\n"  # gives its answer away
        "Question 3: Where is it?\nAnswer: in Paris, at the World's Fair, 330 metres tall\n"  # not a contiguous span
        "Question 4: Where is it?\nAnswer: PARIS!\n"  # normalised: supported
        "Question 5: where is it?\nAnswer: Paris\n"  # the same question again
        "Question 6: When was the Eiffel Tower completed, and where was it built?\n"
        "Answer: 31 March 1889 in Paris. Gustave Eiffel's company built it\n"  # supported but too long
        "Question 7: Which article?\nAnswer: the\n"  # nothing left after normalisation
    )

    result = parse_probes(text, DOCUMENT, opens_with_question=False)

    assert kept(result) == [("Where is it?", "PARIS!")]
    assert [(d.question[:12], d.reason) for d in result.dropped] == [
        ("What is it m", "answer not in the document"),
        ("Where is the", "the question contains its answer"),
        ("Where is it?", "answer not in the document"),
        ("where is it?", "duplicate question"),
        ("When was the", "answer longer than 8 words"),
        ("Which articl", "answer not in the document"),
    ]


def test_the_title_counts_as_part_of_the_document():
    text = "Question 1: What is the passage about?\nAnswer: Landmarks"
    assert kept(parse_probes(text, DOCUMENT, opens_with_question=False)) == []
    assert kept(parse_probes(text, DOCUMENT, title="Landmarks", opens_with_question=False)) == [
        ("What is the passage about?", "Landmarks")
    ]


def test_max_probes_keeps_the_first_supported_ones():
    text = "".join(f"Question {i}: Question number {i} about it?\nAnswer: Paris\n" for i in range(1, 5))
    result = parse_probes(text, DOCUMENT, max_probes=2, opens_with_question=False)
    assert [q.id for q in result.probes] == ["probe-m00", "probe-m01"]
    assert [d.reason for d in result.dropped] == ["more than 2 probes"] * 2


@pytest.mark.parametrize("text", ["", "   \n", "The passage is about a tower."])
def test_text_without_any_pair_gives_no_probes(text):
    result = parse_probes(text, DOCUMENT)
    assert result.probes == () and result.dropped == ()
    assert result.malformed == (1 if text.strip() else 0)  # a question that never got an answer


def test_words_like_question_inside_a_sentence_are_not_markers():
    text = " What question did the fair answer about Paris?\nAnswer: World's Fair"
    result = parse_probes(text, DOCUMENT)
    assert kept(result) == [("What question did the fair answer about Paris?", "World's Fair")]
    assert (result.dropped, result.malformed) == ((), 0)


HISTORY = (
    "Genghis Khan founded the Mongol Empire in 1206. The empire grew quickly. It was ruled from Karakorum by his son Ögedei. "
    "By 1279 Kublai Khan had conquered the Song dynasty. Trade along the Silk Road flourished under Mongol rule."
)


def test_cloze_probes_blank_a_number_first_else_a_name_that_is_not_the_title():
    probes = cloze_probes(HISTORY, title="Mongol Empire", count=10, id_prefix="doc")
    assert [(p.question, p.answers) for p in probes] == [
        ("Fill in the blank: Genghis Khan founded the Mongol Empire in ____.", ("1206",)),
        ("Fill in the blank: It was ruled from ____ by his son Ögedei.", ("Karakorum",)),  # the longest name
        ("Fill in the blank: By ____ Kublai Khan had conquered the Song dynasty.", ("1279",)),  # a number before names
        ("Fill in the blank: Trade along the ____ flourished under Mongol rule.", ("Silk Road",)),
    ]  # "The empire grew quickly." has nothing to blank
    assert [p.id for p in probes] == ["doc-c00", "doc-c01", "doc-c02", "doc-c03"]
    for probe in probes:
        assert probe.answers[0] in HISTORY and probe.answers[0] not in probe.question


def test_cloze_probes_are_spread_over_the_document_and_capped():
    sentences = " ".join(f"Report {n} counted {100 + n} ships." for n in range(9))
    probes = cloze_probes(sentences, count=3)
    assert [p.answers[0] for p in probes] == ["100", "104", "108"]  # first, middle and last sentence
    assert cloze_probes(sentences, count=1)[0].answers == ("100",)
    assert cloze_probes("no names or numbers here.", count=3) == ()
