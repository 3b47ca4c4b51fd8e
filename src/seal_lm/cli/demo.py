"""``seal demo``: watch a model learn one passage from its own self-edit, in a few minutes on a CPU.

``--model`` (the bundled model) goes first, then ``--policy`` (the SEAL policy trained from it): the same passage,
each model's own self-edit, each trained and probed the same way, so the two scores say what the
policy's training bought.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings
from seal_lm.cli.options import option
from seal_lm.domains.base import SelfEditRejected
from seal_lm.domains.knowledge.data import Passage, load_passages
from seal_lm.domains.knowledge.domain import KnowledgeDomain, KnowledgeSettings
from seal_lm.domains.knowledge.self_edits import SELF_EDIT_STYLES
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.loading import DEFAULT_MODEL, MODEL_HELP, SEAL_POLICY, check_model_spec, load_model
from seal_lm.model.prompting import PromptFormatter


@dataclass
class DemoConfig:
    model: str = option(DEFAULT_MODEL, MODEL_HELP)
    policy: str = option(
        SEAL_POLICY,
        "A second model that writes and learns its own self-edit of the same passage, for comparison "
        "(the default is the SEAL policy trained on the bundled model; '' for none).",
    )
    data: str = option("", "Passages file (default: the SQuAD passages bundled with seal-lm).")
    index: int = option(0, "Which passage of the file to learn.")
    self_edit_prompt: str = option(
        "implications", "How the model rewrites the passage (see the README).", SELF_EDIT_STYLES
    )
    target_modules: tuple[str, ...] = option(
        ("all-linear",), "LoRA target modules (all-linear learns fastest at this size)."
    )
    epochs: int = option(10, "Inner-loop epochs.")
    seed: int = option(0, "Seed for sampling and the adapter.")


@dataclass
class Learned:
    """What one model did with the passage: its scores before and after learning its own self-edit."""

    model: str
    before: list[dict]
    after: list[dict]


def demo(config: DemoConfig) -> None:
    """For each model: answer without the passage, write a self-edit, fine-tune on it, answer again."""
    source = config.data or str(resources.files("seal_lm") / "data" / "sample_passages.json")
    passages = load_passages(source)
    if not 0 <= config.index < len(passages):
        raise ValueError(f"--index {config.index} is out of range: {source} has {len(passages)} passages.")
    passage = passages[config.index]
    models = [config.model] + ([config.policy] if config.policy else [])
    for spec in models:
        check_model_spec(spec)
    print(f"\nPassage ({passage.title}), which no model sees when answering:\n{passage.context}\n")
    results = [_learn(spec, passage, config) for spec in models]
    print("In short:")
    for result in results:
        print(
            f"  Score: {_correct(result.before)}/{len(result.before)} before → {_correct(result.after)}/{len(result.after)} after.  ({result.model})"
        )


def _learn(spec: str, passage: Passage, config: DemoConfig) -> Learned:
    """Load ``spec``, probe it, let it write a self-edit of ``passage``, train a LoRA adapter on that, probe again."""
    print(f"=== {spec} ===\nLoading ...")
    settings = KnowledgeSettings(
        self_edit_style=config.self_edit_prompt,
        inner_loop=InnerLoopSettings(target_modules=config.target_modules, epochs=config.epochs, seed=config.seed),
    )
    loaded = load_model(spec)
    domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat), settings)
    loop = InnerLoop(loaded.model, loaded.tokenizer, progress=True)
    prompts = domain.probe_prompts(passage)
    before = domain.score(passage, [g.text for g in loop.generate_with_base(prompts, domain.answer_generation)])
    _show("Before: answers with no passage in the prompt", before)

    prompt = domain.self_edit_prompt(passage)
    sampling = GenerationSettings(
        max_new_tokens=320, temperature=0.7, top_p=0.95, seed=config.seed
    )  # as seal eval knowledge
    edit = loop.generate_with_base([prompt], sampling)[0] if prompt else None
    print(
        f"Self-edit written by the model ({config.self_edit_prompt}{', cut at the token budget' if edit and edit.truncated else ''}):"
    )
    print((edit.text if edit else "(none)") + "\n")
    try:
        plan = domain.parse_self_edit(passage, edit.text if edit else "", edit.truncated if edit else False)
    except SelfEditRejected as reason:
        print(f"The self-edit is unusable ({reason}); training on the passage alone instead.")
        plan = domain.context_plan(passage)
    print(f"Fine-tuning a fresh LoRA adapter on {len(plan.examples)} sequences for {config.epochs} epochs ...")
    result = loop.train_and_answer([plan], prompts, domain.answer_generation)[0]
    after = domain.score(passage, [g.text for g in result.answers])
    stats = result.stats
    if stats.stopped:
        print(f"Trained {stats.steps} steps, then stopped: {stats.stopped}.\n")
    else:
        print(
            f"Trained {stats.steps} steps in {stats.seconds:.0f} s, loss {stats.first_loss:.2f} → {stats.last_loss:.2f}\n"
        )
    _show("After: answers from the adapted model, still with no passage in the prompt", after)
    print(f"Score: {_correct(before)}/{len(before)} before → {_correct(after)}/{len(after)} after.\n")
    return Learned(model=spec, before=before, after=after)


def _correct(grades: list[dict]) -> int:
    return sum(g["correct"] for g in grades)


def _show(title: str, grades: list[dict]) -> None:
    print(title)
    for g in grades:
        print(
            f"  [{'✓' if g['correct'] else '✗'}] {g['question']}\n      answer: {g['answer']!r}   gold: {g['gold'][0]!r}"
        )
    print()
