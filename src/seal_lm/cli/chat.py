"""``seal chat``: ask a run's current (or a pinned) version, or any model, from the terminal.

With a question it answers once; without, it holds a conversation (an empty line or Ctrl-D ends it,
``/reset`` forgets what was said). Answers are printed as they are generated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seal_lm.cli.options import option, optional_positional
from seal_lm.model.loading import DEFAULT_MODEL, MODEL_HELP, load_model
from seal_lm.threads import usable_cores


@dataclass
class ChatConfig:
    question: str = optional_positional("", "A question to answer once (none: a conversation on the terminal).")
    run: str = option(
        "", "A run directory of seal serve or seal adapt: talk to its versions (default: talk to --model)."
    )
    version: int = option(0, "With --run: the version to talk to (0: the current one).")
    model: str = option(DEFAULT_MODEL, "Without --run: " + MODEL_HELP)
    system: str = option("", "A system message opening the conversation.")
    max_tokens: int = option(256, "The most tokens of one answer.")
    temperature: float = option(0.2, "Sampling temperature (0: greedy).")
    top_p: float = option(0.9, "Nucleus sampling.")
    seed: int = option(0, "Seed of the first answer (each later answer adds one).")


def chat(config: ChatConfig, read: Callable[[str], str] = input) -> None:
    """Answer ``config.question``, or hold a conversation reading lines with ``read``."""
    from seal_lm.cli.serve import load_version
    from seal_lm.model.completion import CompletionWorker, Sampling, chat_prompt

    if config.max_tokens < 1 or config.temperature < 0 or not 0 < config.top_p <= 1:
        raise ValueError("--max-tokens must be at least 1, --temperature at least 0, --top-p in (0, 1].")
    if config.run:
        loaded, version = load_version(config.run, config.version)
        who = f"version {version} of {config.run}"
    else:
        loaded, who = load_model(config.model), config.model
    worker = CompletionWorker(threads=usable_cores())
    opening = [{"role": "system", "content": config.system}] if config.system else []
    messages = list(opening)

    def answer(question: str, turn: int) -> str:
        messages.append({"role": "user", "content": question})
        prompt = chat_prompt(loaded.tokenizer, loaded.chat, messages)
        sampling = Sampling(config.max_tokens, config.temperature, config.top_p, seed=config.seed + turn)
        stream = worker.submit(loaded.model, loaded.tokenizer, prompt, sampling)
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        messages.append({"role": "assistant", "content": stream.result.text})
        return stream.result.text

    if config.question:
        answer(config.question, 0)
        return
    print(f"Talking to {who}. An empty line or Ctrl-D ends; /reset forgets the conversation.")
    turn = 0
    while True:
        try:
            line = read("you> ").strip()
        except EOFError:
            print()
            break
        if not line:
            break
        if line == "/reset":
            messages[:] = opening
            continue
        answer(line, turn)
        turn += 1
