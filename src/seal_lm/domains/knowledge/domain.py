"""Knowledge incorporation (SEAL domain 1): learn a passage so that questions about it can be
answered without the passage in the prompt."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from seal_lm.adapt.lora import InnerLoopSettings, TrainExample, TrainPlan
from seal_lm.choices import check_choice
from seal_lm.domains.base import SelfEditRejected
from seal_lm.domains.knowledge.data import Passage
from seal_lm.domains.knowledge.grading import grade_answer
from seal_lm.domains.knowledge.self_edits import SELF_EDIT_STYLES, SelfEditError, parse_self_edit
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.prompting import PromptFormatter, PromptTemplate

ANSWER_STYLES = {
    # Two demonstrations in a plain completion prompt: the short-answer format small models follow.
    "few-shot": PromptTemplate(
        plain=(
            "Answer each question with a short phrase.\n\n"
            "Topic: Moon landing\nQuestion: Who was the first person to walk on the Moon?\nAnswer: Neil Armstrong\n\n"
            "Topic: Water\nQuestion: At what temperature in Celsius does water boil at sea level?\nAnswer: 100 degrees\n\n"
            "Topic: {title}\n{passage}Question: {question}\nAnswer:"
        ),
        user="",
    ),
    # The paper's zero-shot template (as a chat turn for instruct models).
    "paper": PromptTemplate(
        plain="Topic: {title}\n{passage}Let's answer a question directly and concisely.\nQuestion: {question}\nAnswer:",
        user="Topic: {title}\n{passage}Let's answer a question directly and concisely.\nQuestion: {question}",
    ),
}
ALWAYS_PLAIN_ANSWER_STYLES = {"few-shot"}
IN_CONTEXT_PASSAGE = (
    "Passage: {context}\n"  # fills {passage} of an answer style for the in-context condition (else empty)
)


@dataclass(frozen=True)
class KnowledgeSettings:
    """How passages become prompts and training plans."""

    self_edit_style: str = "implications"
    answer_style: str = "few-shot"
    answer_max_tokens: int = 32
    inner_loop: InnerLoopSettings = field(default_factory=InnerLoopSettings)

    def __post_init__(self):
        check_choice(self.self_edit_style, SELF_EDIT_STYLES, "self-edit prompt")
        check_choice(self.answer_style, ANSWER_STYLES, "answer style")


_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]\"'][.!?])\s")


def short_answer(text: str) -> str:
    """The first line and first sentence of a generated answer (what gets graded)."""
    first_line = text.strip().split("\n", 1)[0]
    return _SENTENCE_END.split(first_line, 1)[0].strip()


class KnowledgeDomain:
    """Passages in, title-prefixed training sequences out, questions graded against gold answers."""

    name = "knowledge"
    conditions = {
        "base": "base",
        "in-context": "in-context",
        "passage": "context",
        "passage-repeat": "context-repeat",
        "self-edit": "self-edit",
        "external": "external",
    }
    reference = "passage"
    metrics = ("correct", "exact_match", "f1")

    def __init__(self, formatter: PromptFormatter, settings: KnowledgeSettings = KnowledgeSettings()):
        self.formatter = formatter
        self.settings = settings
        plain = settings.answer_style in ALWAYS_PLAIN_ANSWER_STYLES
        self._answer_formatter = PromptFormatter(formatter.tokenizer, chat=formatter.chat and not plain)
        # Greedy, stopped at the end of the line: answers are graded on their first sentence.
        self.answer_generation = GenerationSettings(max_new_tokens=settings.answer_max_tokens, stop=("\n",))

    def context_id(self, passage: Passage) -> str:
        return passage.id

    def self_edit_prompt(self, passage: Passage) -> str | None:
        template = SELF_EDIT_STYLES[self.settings.self_edit_style].template
        return None if template is None else self.formatter(template, title=passage.title, context=passage.context)

    def parse_self_edit(self, passage: Passage, text: str, truncated: bool = False) -> TrainPlan:
        try:
            parsed = parse_self_edit(
                text,
                title=passage.title,
                context=passage.context,
                style=self.settings.self_edit_style,
                truncated=truncated,
            )
        except SelfEditError as err:
            raise SelfEditRejected(str(err)) from None
        return self._plan(passage, parsed.sequences)

    def context_plan(self, passage: Passage) -> TrainPlan:
        return self._plan(passage, [document(passage)])

    def repeat_plan(self, passage: Passage, plan: TrainPlan) -> TrainPlan:
        """The passage alone, repeated to about as many tokens as ``plan`` trains on per epoch (at least once)."""

        def tokens(text: str) -> int:
            return len(self.formatter.tokenizer(text, add_special_tokens=False)["input_ids"])

        planned = sum(tokens(example.prompt + example.completion) for example in plan.examples)
        return self._plan(passage, [document(passage)] * max(1, round(planned / tokens(document(passage)))))

    def probe_prompts(self, passage: Passage) -> list[str]:
        return self._answer_prompts(passage, "")

    def in_context_prompts(self, passage: Passage) -> list[str]:
        """The probe prompts with the passage in them (the in-context ceiling)."""
        return self._answer_prompts(passage, IN_CONTEXT_PASSAGE.format(context=passage.context.strip()))

    def score(self, passage: Passage, answers: Sequence[str]) -> list[dict]:
        records = []
        for question, raw in zip(passage.questions, answers, strict=True):
            answer = short_answer(raw)
            grade = grade_answer(answer, question.answers)
            records.append(
                {
                    "question_id": question.id,
                    "question": question.question,
                    "gold": list(question.answers),
                    "raw_answer": raw,
                    "answer": answer,
                    "correct": grade.contains,
                    **{k: v for k, v in asdict(grade).items() if k != "contains"},
                }
            )
        return records

    def _answer_prompts(self, passage: Passage, shown: str) -> list[str]:
        template = ANSWER_STYLES[self.settings.answer_style]
        return [
            self._answer_formatter(template, title=passage.title, passage=shown, question=q.question)
            for q in passage.questions
        ]

    def _plan(self, passage: Passage, sequences: list[str]) -> TrainPlan:
        """Training sequences with the passage as each one's context (what a distillation teacher reads first)."""
        context = f"{document(passage)}\n\n"
        return TrainPlan(tuple(TrainExample(s, context=context) for s in sequences), self.settings.inner_loop)


def document(passage: Passage) -> str:
    """The passage as one training sequence: its title, then its text."""
    return f"{passage.title}\n{passage.context.strip()}"
