"""Grade short answers against SQuAD gold answers.

The rule-based grader computes, for every answer, three numbers side by side so that no table can
be won by verbosity:

- ``contains``: a normalised gold answer appears, on word boundaries, in the normalised answer
  (lenient; the closest rule-based proxy for the paper's LLM judge);
- ``exact_match`` and ``f1``: the official SQuAD v1.1 metrics (max over the gold answers), using the
  official normalisation, so they agree with the official evaluation script.

:class:`LLMJudge` grades with the paper's yes/no prompt against any OpenAI-compatible endpoint.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import string
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Official SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    """Official SQuAD v1.1 token-overlap F1 between one prediction and one gold answer."""
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> bool:
    """Official SQuAD v1.1 exact match after normalisation."""
    return normalize_answer(prediction) == normalize_answer(gold)


def contains_answer(prediction: str, gold: str) -> bool:
    """Whether the normalised gold answer occurs in the normalised prediction as whole words."""
    gold_normalized = normalize_answer(gold)
    return bool(gold_normalized) and f" {gold_normalized} " in f" {normalize_answer(prediction)} "


@dataclass(frozen=True)
class Grade:
    """How one answer scores against its gold answers."""

    contains: bool
    exact_match: bool
    f1: float


def grade_answer(prediction: str, golds: Sequence[str]) -> Grade:
    """Grade one answer against every accepted gold answer (max over golds, as SQuAD does)."""
    return Grade(
        contains=any(contains_answer(prediction, g) for g in golds),
        exact_match=any(exact_match(prediction, g) for g in golds),
        f1=max(token_f1(prediction, g) for g in golds),
    )


def mean_f1(grades: Sequence[dict]) -> float:
    """A reward (``seal train knowledge --reward f1``): the mean token F1 of the graded answers, partial credit included."""
    return statistics.fmean(grade["f1"] for grade in grades)


# The paper's grading prompt (SEAL knowledge-incorporation, OpenAI grading template).
JUDGE_PROMPT = (
    "You are a grading assistant. Your job is to determine whether a student's answer correctly answers "
    "the question based solely on the provided gold answer. Do not use any outside knowledge. The student "
    "answer can include additional information, but it must at least fully convey the gold answer and must "
    "not contradict it. Ignore style, phrasing, or extra details that do not affect correctness. "
    "Respond ONLY with 'yes' or 'no'.\n\n"
    "Question: {question}\nGold answer: {gold}\nStudent answer: {prediction}\n"
    "Is the student answer correct based solely on the gold answer? Respond 'yes' or 'no'."
)


class JudgeError(RuntimeError):
    """The judge endpoint could not be reached or answered with something unusable."""


class LLMJudge:
    """Yes/no grading by an LLM behind an OpenAI-compatible ``/chat/completions`` endpoint.

    The API key is read from the environment variable named by ``api_key_env`` (may be unset for
    local servers). An empty prediction is graded "no" without a request, as in the paper. A request
    that fails in a way that may pass (unreachable, timed out, HTTP 429 or 5xx) is tried ``attempts``
    times in all, waiting ``backoff`` seconds before the first retry and twice as long before each next.
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        attempts: int = 4,
        backoff: float = 2.0,
    ):
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = os.environ.get(api_key_env, "")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff

    def __call__(self, question: str, golds: Sequence[str], prediction: str) -> bool:
        """Whether the judge says the prediction conveys the gold answer."""
        if not prediction.strip():
            return False
        prompt = JUDGE_PROMPT.format(question=question, gold=" | ".join(golds), prediction=prediction.strip())
        return parse_yes_no(self._complete(prompt))

    def _complete(self, prompt: str) -> str:
        """The judge's reply to ``prompt``, retried with exponential backoff while the endpoint fails."""
        body = json.dumps(
            {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
        ).encode()
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._post(body)
            except urllib.error.HTTPError as err:
                if err.code != 429 and err.code < 500:
                    raise JudgeError(
                        f"judge endpoint {self.url} refused the request ({err}). Check --judge-url, --judge-model and the API key."
                    ) from None
                failure = err
            except (urllib.error.URLError, TimeoutError, OSError) as err:
                failure = err
        raise JudgeError(
            f"judge endpoint {self.url} gave no answer in {self.attempts} attempt(s) (last: {failure}). Check --judge-url and that the server is up."
        ) from None

    def _post(self, body: bytes) -> str:
        """One request: the reply's message text (urllib's errors pass through, for :meth:`_complete` to retry)."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            try:
                return json.load(response)["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError, json.JSONDecodeError):
                raise JudgeError(
                    f"judge endpoint {self.url} did not answer in the OpenAI chat-completions format."
                ) from None


def parse_yes_no(text: str) -> bool:
    """True only for an unambiguous yes (a "yes" and no "no"), as the paper's grader does."""
    return bool(re.search(r"\byes\b", text, re.I)) and not re.search(r"\bno\b", text, re.I)
