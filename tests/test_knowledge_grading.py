"""Tests for seal_lm.domains.knowledge.grading: SQuAD metrics, the lenient 'contains' rule, the LLM judge.

The SQuAD metrics are cross-checked against torchmetrics' SQuAD metric (a maintained implementation
of the official v1.1 script): corpus-level scores on tricky cases, and single answers on arbitrary text.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import reference_squad_scores
from hypothesis import given
from hypothesis import strategies as st

from seal_lm.domains.knowledge import grading
from seal_lm.domains.knowledge.data import Passage, Question, to_official_squad
from seal_lm.domains.knowledge.grading import (
    Grade,
    JudgeError,
    LLMJudge,
    contains_answer,
    exact_match,
    grade_answer,
    normalize_answer,
    parse_yes_no,
    token_f1,
)

# ---------------------------------------------------------------------------------------------
# The SQuAD metrics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("an apple, the pie", "apple pie"),
        ("A. Lincoln", "lincoln"),  # the article goes once the full stop is gone, as in the official script
        ("Theater", "theater"),  # 'the' is removed only as a whole word
        ("well-known", "wellknown"),  # punctuation is deleted, not replaced by a space
        ("  \n\t ", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_token_f1_partial_overlap():
    # prediction tokens {cat, sat}; gold {cat, sat, on, mat}: precision 1, recall 1/2
    assert token_f1("The cat sat.", "cat sat on the mat") == pytest.approx(2 / 3)


def test_token_f1_counts_repeated_tokens_once_per_match():
    # common = {red: 1, blue: 1}: precision 2/3, recall 1
    assert token_f1("red red blue", "red blue") == pytest.approx(0.8)


def test_token_f1_identical_after_normalisation_and_disjoint():
    assert token_f1("The Denver Broncos!", "denver broncos") == 1.0
    assert token_f1("Carolina Panthers", "Denver Broncos") == 0.0
    assert token_f1("", "Denver Broncos") == 0.0


def test_exact_match():
    assert exact_match("The Eiffel Tower.", "eiffel tower")
    assert not exact_match("Eiffel", "Eiffel Tower")
    assert not exact_match("It is the Eiffel Tower", "Eiffel Tower")


@pytest.mark.parametrize(
    "prediction, gold, expected",
    [
        ("It is the Eiffel Tower, in Paris.", "Eiffel Tower", True),
        ("modern art.", "art", True),
        ("They threw a party.", "art", False),  # word boundaries: 'art' is not in 'party'
        ("Yorkshire", "York", False),
        ("new york city", "New York", True),
        ("Anything at all", "the", False),  # a gold that normalises to nothing is never contained
        ("", "Paris", False),
    ],
)
def test_contains_answer_on_word_boundaries(prediction, gold, expected):
    assert contains_answer(prediction, gold) is expected


def test_grade_answer_takes_the_best_gold():
    golds = ["Denver Broncos", "Broncos"]

    assert grade_answer("The Broncos", golds) == Grade(contains=True, exact_match=True, f1=1.0)

    partial = grade_answer("Denver", golds)
    assert partial.exact_match is False
    assert partial.contains is False
    assert partial.f1 == pytest.approx(2 / 3)  # vs "Denver Broncos"; 0 vs "Broncos"


def test_grade_answer_verbose_answer_contains_but_scores_low_f1():
    """Verbosity earns 'contains' but not EM, and F1 drops with every extra word."""
    grade = grade_answer("The team that won the game was the Denver Broncos of Colorado.", ["Denver Broncos"])

    assert grade.contains and not grade.exact_match
    assert 0 < grade.f1 < 0.5


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes.", True),
        ("yes", True),
        ("YES, it is correct", True),
        ("no", False),
        ("No.", False),
        ("yes and no", False),
        ("", False),
        ("Yesterday", False),
        ("I cannot tell", False),
    ],
)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


# ---------------------------------------------------------------------------------------------
# Cross-check with a maintained implementation of the official SQuAD v1.1 metric (torchmetrics)
# ---------------------------------------------------------------------------------------------

# (question, golds, prediction): punctuation, articles, casing, partial overlap, several golds,
# an empty prediction, one that normalises to nothing, a verbose one, a wrong one. (Where prediction
# and gold both normalise to nothing the two differ on purpose; see the test after the next.)
GRADED = [
    ("Who won Super Bowl 50?", ["Denver Broncos", "Denver Broncos", "Broncos"], "the Denver Broncos!"),
    ("Where was it played?", ["Levi's Stadium"], "levis stadium"),
    ("In which city?", ["Santa Clara", "Santa Clara, California"], "Santa Clara, CA"),
    ("What is Warsaw?", ["capital of Poland"], "The capital city of Poland."),
    ("Which river?", ["Vistula"], ""),
    ("Which article?", ["the answer"], "The!"),
    ("Who designed it?", ["Gustave Eiffel", "Eiffel"], "It was designed by the engineer Gustave Eiffel in 1884."),
    ("How tall is it?", ["330 metres", "330 m"], "300 metres"),
    ("What colour?", ["red"], "Blue"),
    ("Which year?", ["1889"], "In 1889."),
    ("Which art?", ["art"], "a party"),
    ("Which fruit?", ["an apple"], "Apple."),
    ("Which words?", ["well-known  words", "well known"], "Well known, words"),
]


@pytest.fixture
def graded_squad():
    """The GRADED cases as passages and a predictions dict keyed by question id."""
    passages = [
        Passage(f"p{i}", f"Title {i}", f"Context {i}.", (Question(f"q{i}", question, tuple(golds)),))
        for i, (question, golds, _) in enumerate(GRADED)
    ]
    predictions = {f"q{i}": prediction for i, (_, _, prediction) in enumerate(GRADED)}
    return passages, predictions


def our_scores(passages, predictions):
    grades = [grade_answer(predictions[q.id], q.answers) for p in passages for q in p.questions]
    return {
        "exact_match": 100.0 * sum(g.exact_match for g in grades) / len(grades),
        "f1": 100.0 * sum(g.f1 for g in grades) / len(grades),
    }


def test_mean_em_and_f1_equal_the_reference_implementation(graded_squad):
    passages, predictions = graded_squad

    ours = our_scores(passages, predictions)
    theirs = reference_squad_scores(to_official_squad(passages)["data"], predictions)

    assert ours["exact_match"] == pytest.approx(theirs["exact_match"], abs=1e-4)
    assert ours["f1"] == pytest.approx(theirs["f1"], abs=1e-4)
    # The sample is varied enough to be a real check: neither all right nor all wrong.
    assert 0 < theirs["exact_match"] < 100 and 0 < theirs["f1"] < 100


# Answer-like text: words that include the articles, punctuation, odd whitespace, a non-ASCII letter.
answer_text = st.lists(
    st.sampled_from(
        [
            "the",
            "an",
            "a",
            "The",
            "AN",
            "cat",
            "Cat",
            "théâtre",
            "x",
            " ",
            "  ",
            "\t",
            "\n",
            ".",
            ",",
            "!",
            "'",
            "-",
            "(",
            ")",
        ]
    ),
    max_size=12,
).map("".join)


def one_answer_reference_scores(prediction: str, gold: str) -> dict[str, float]:
    squad = to_official_squad([Passage("p", "T", "C.", (Question("q", "Q?", (gold,)),))])["data"]
    return reference_squad_scores(squad, {"q": prediction})


@given(prediction=answer_text, gold=answer_text)
def test_metrics_agree_with_the_reference_implementation_on_arbitrary_text(prediction, gold):
    theirs = one_answer_reference_scores(prediction, gold)
    assert 100.0 * exact_match(prediction, gold) == pytest.approx(theirs["exact_match"], abs=1e-4)
    if normalize_answer(prediction) or normalize_answer(gold):
        assert 100.0 * token_f1(prediction, gold) == pytest.approx(theirs["f1"], abs=1e-4)


def test_two_answers_that_normalise_to_nothing_have_f1_zero_as_in_squad_v1_1():
    """The v1.1 script scores F1 0 without a shared token, even between two empty answers; torchmetrics
    applies SQuAD 2.0's no-answer rule there (F1 1). We follow v1.1, the version of the data we score."""
    assert token_f1("The!", "a") == 0.0 and exact_match("The!", "a")
    assert one_answer_reference_scores("The!", "a") == {"exact_match": 100.0, "f1": 100.0}


# ---------------------------------------------------------------------------------------------
# LLMJudge against a fake OpenAI-compatible server on localhost
# ---------------------------------------------------------------------------------------------


class FakeChatServer(ThreadingHTTPServer):
    """Answers POST /v1/chat/completions with "Yes" when the student answer contains a gold answer.

    Every request is recorded as (path, JSON body, Authorization header). Set ``raw_reply`` to
    (status, body bytes) to send something else instead, and ``failures`` to answer that many
    requests first with ``failure_status``.
    """

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeChatHandler)
        self.requests: list[tuple[str, dict, str | None]] = []
        self.raw_reply: tuple[int, bytes] | None = None
        self.failures = 0
        self.failure_status = 503


class FakeChatHandler(BaseHTTPRequestHandler):
    server: FakeChatServer

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body, self.headers.get("Authorization")))
        if self.server.failures:
            self.server.failures -= 1
            status, payload = self.server.failure_status, b'{"error": "try again"}'
        elif self.server.raw_reply is not None:
            status, payload = self.server.raw_reply
        elif self.path != "/v1/chat/completions":
            status, payload = 404, b'{"error": "not found"}'
        else:
            prompt = body["messages"][-1]["content"]
            golds = re.search(r"Gold answer: (.*)\n", prompt).group(1).split(" | ")
            student = re.search(r"Student answer: (.*)\n", prompt).group(1)
            verdict = "Yes" if any(g.lower() in student.lower() for g in golds) else "No"
            status, payload = (
                200,
                json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]}).encode(),
            )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # keep pytest output clean
        pass


@pytest.fixture
def chat_server(monkeypatch):
    # Never route localhost through a proxy that might be configured in the environment.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = FakeChatServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def judge_for(server, **kwargs) -> LLMJudge:
    return LLMJudge(
        f"http://127.0.0.1:{server.server_address[1]}/v1/", "judge-model", **{"timeout": 5, "backoff": 0, **kwargs}
    )


def test_judge_verdicts(chat_server):
    judge = judge_for(chat_server)

    assert judge("Where is the tower?", ["Paris"], "It stands in Paris.") is True
    assert judge("Where is the tower?", ["Paris"], "It stands in Lyon.") is False
    assert judge("Who won?", ["Denver Broncos", "Broncos"], "the broncos") is True
    assert len(chat_server.requests) == 3


def test_judge_request_carries_the_paper_prompt(chat_server):
    judge_for(chat_server)("Where is the tower?", ["Paris", "City of Light"], "  It stands in Paris.  ")

    [(path, body, _)] = chat_server.requests
    assert path == "/v1/chat/completions"
    assert body["model"] == "judge-model"
    assert body["temperature"] == 0
    [message] = body["messages"]
    assert message["role"] == "user"
    prompt = message["content"]
    question_at = prompt.index("Question: Where is the tower?\n")
    gold_at = prompt.index("Gold answer: Paris | City of Light\n")
    student_at = prompt.index("Student answer: It stands in Paris.\n")  # stripped
    assert question_at < gold_at < student_at
    assert "Respond 'yes' or 'no'" in prompt


def test_judge_sends_the_bearer_key_from_the_named_env_var(chat_server, monkeypatch):
    monkeypatch.setenv("SEAL_TEST_JUDGE_KEY", "sk-test-123")

    judge_for(chat_server, api_key_env="SEAL_TEST_JUDGE_KEY")("Q?", ["a"], "a")

    assert chat_server.requests[0][2] == "Bearer sk-test-123"


def test_judge_sends_no_authorization_when_the_env_var_is_unset(chat_server, monkeypatch):
    monkeypatch.delenv("SEAL_TEST_UNSET_KEY", raising=False)

    judge_for(chat_server, api_key_env="SEAL_TEST_UNSET_KEY")("Q?", ["a"], "a")

    assert chat_server.requests[0][2] is None


@pytest.mark.parametrize("prediction", ["", "   \n"])
def test_judge_empty_prediction_is_no_without_a_request(chat_server, prediction):
    assert judge_for(chat_server)("Q?", ["a"], prediction) is False
    assert chat_server.requests == []


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_judge_unreachable_url_raises_a_one_line_judge_error(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    judge = LLMJudge(f"http://127.0.0.1:{unused_port()}/v1", "judge-model", timeout=5, backoff=0)

    with pytest.raises(JudgeError) as info:
        judge("Q?", ["a"], "a")
    message = str(info.value)
    assert "\n" not in message
    assert judge.url in message


@pytest.mark.parametrize(
    "status, body",
    [
        (200, b'{"result": "yes"}'),  # JSON, but not the chat-completions shape
        (200, b'{"choices": []}'),
        (200, b"<html>not json</html>"),
        (500, b'{"error": "boom"}'),
    ],
)
def test_judge_malformed_response_raises_a_one_line_judge_error(chat_server, status, body):
    chat_server.raw_reply = (status, body)

    with pytest.raises(JudgeError) as info:
        judge_for(chat_server)("Q?", ["a"], "a")
    assert "\n" not in str(info.value)
    assert "/v1/chat/completions" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_judge_that_fails_a_few_times_is_retried_with_exponential_backoff(chat_server, monkeypatch, status):
    waits = []
    monkeypatch.setattr(grading.time, "sleep", waits.append)
    chat_server.failures, chat_server.failure_status = 3, status

    assert judge_for(chat_server, attempts=4, backoff=1.5)("Where?", ["Paris"], "In Paris.") is True

    assert len(chat_server.requests) == 4
    assert waits == [1.5, 3.0, 6.0]


def test_a_judge_failing_every_attempt_is_one_line_naming_the_attempts(chat_server, monkeypatch):
    monkeypatch.setattr(grading.time, "sleep", lambda seconds: None)
    chat_server.failures = 10

    with pytest.raises(JudgeError) as info:
        judge_for(chat_server, attempts=3)("Where?", ["Paris"], "In Paris.")

    assert len(chat_server.requests) == 3
    message = str(info.value)
    assert "\n" not in message
    assert "3 attempt(s)" in message and "503" in message and "/v1/chat/completions" in message


@pytest.mark.parametrize("status", [400, 401, 404])
def test_a_refused_request_is_not_retried(chat_server, monkeypatch, status):
    monkeypatch.setattr(grading.time, "sleep", lambda seconds: pytest.fail("a refused request must not be retried"))
    chat_server.failures, chat_server.failure_status = 1, status

    with pytest.raises(JudgeError, match=f"refused the request .*{status}"):
        judge_for(chat_server)("Where?", ["Paris"], "In Paris.")
    assert len(chat_server.requests) == 1
