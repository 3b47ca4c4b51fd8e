"""Prompt templates that render as a chat conversation for instruct models and as plain text for base models."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt in two forms, filled in with ``str.format`` fields.

    ``plain`` is a completion prompt for base models (it ends where the model should continue).
    ``user`` (and optionally ``system``) are the messages for chat models, rendered with the
    tokenizer's chat template; ``response_prefix`` is text the assistant turn starts with.
    """

    plain: str
    user: str
    system: str | None = None
    response_prefix: str = ""


class PromptFormatter:
    """Renders :class:`PromptTemplate` objects for one tokenizer, as chat or as plain text."""

    def __init__(self, tokenizer, chat: bool):
        self.tokenizer = tokenizer
        self.chat = chat

    def __call__(self, template: PromptTemplate, **fields: str) -> str:
        """The prompt text for ``template`` filled in with ``fields``."""
        if not self.chat:
            return template.plain.format(**fields)
        messages = [{"role": "system", "content": template.system.format(**fields)}] if template.system else []
        messages.append({"role": "user", "content": template.user.format(**fields)})
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return rendered + template.response_prefix.format(**fields)
