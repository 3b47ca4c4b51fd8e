"""The SEAL outer loop: ReST-EM (rejection sampling + supervised fine-tuning) of the self-edit policy.

Each round, on-policy:

- **E-step**: for a fresh, seeded sample of contexts, the *current* policy writes ``k`` self-edits
  per context; each is scored by the inner loop (train a fresh adapter on it, answer the probes, turn
  their grades into a reward; averaged over ``inner_seeds``). A keep rule picks the self-edits to
  learn from. The reward and the keep rule are plain callables (:data:`Reward`, :data:`KeepRule`).
- **M-step**: the policy is fine-tuned on (self-edit prompt → kept self-edit) pairs, merged into a
  new full checkpoint ``round-N/policy`` that the next round samples from.

At the end, the final policy is also saved as a LoRA adapter on the initial model (``policy-adapter``,
exact: the rounds' merged updates have rank at most rounds × the M-step's rank; 29 MB for three rounds
on SmolLM2-135M against 540 MB), which ``--model`` takes like the full folder.

Each context of the E-step is one job for an executor (:mod:`seal_lm.runs.executor`): in this process,
or spread over Ray workers that each load the round's policy; the M-step runs here. Everything is
recorded as it happens (``round-N/samples.jsonl``, one line per context, in the order contexts
finish), so a killed run resumes at the contexts not yet scored. Nothing here knows which domain it
runs on.
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings, TrainExample, TrainPlan, train_on_plan
from seal_lm.domains.base import Domain, SelfEditRejected
from seal_lm.loops.self_edits import reseeded, sample_self_edits
from seal_lm.loops.worker import Worker
from seal_lm.model.adapters import save_difference_adapter
from seal_lm.model.generation import GenerationSettings
from seal_lm.model.loading import LoadedModel
from seal_lm.runs.executor import Executor, InProcessExecutor
from seal_lm.runs.rundir import RunDir, RunDirError

log = logging.getLogger(__name__)

SAMPLES = "samples.jsonl"
POLICY_ADAPTER = "policy-adapter"  # the final policy as a LoRA adapter on the initial model


@dataclass(frozen=True)
class Scored:
    """The candidates of one context after the E-step, as a keep rule sees them."""

    rewards: list[float | None]  # one per self-edit; None for a rejected one (never kept)
    baseline: float | None  # the context-only adapter's reward, when measured

    def usable(self) -> list[tuple[int, float]]:
        return [(i, r) for i, r in enumerate(self.rewards) if r is not None]


@dataclass(frozen=True)
class Kept:
    indices: list[int]
    note: str | None = None  # "tie", "all-zero", ... for the round summary


KeepRule = Callable[[Scored], Kept]
Reward = Callable[[Sequence[dict]], float]  # the grades of one adapter's probe answers (``Domain.score``) → its reward


def mean_correct(grades: Sequence[dict]) -> float:
    """SEAL's reward: the share of probes answered correctly (every domain's grades say ``correct``)."""
    return statistics.fmean(grade["correct"] for grade in grades)


def best_of_k(scored: Scored) -> Kept:
    """SEAL's knowledge rule: the single best self-edit; none if every reward is zero; ties → the first."""
    best = max((r for _, r in scored.usable()), default=0.0)
    if best <= 0:
        return Kept([], "all-zero")
    tied = [i for i, r in scored.usable() if r == best]
    return Kept(tied[:1], "tie" if len(tied) > 1 else None)


def positive_gain(scored: Scored) -> Kept:
    """Every self-edit that beats training on the context alone."""
    if scored.baseline is None:
        raise ValueError("the positive-gain rule needs the context-only baseline score")
    kept = [i for i, r in scored.usable() if r > scored.baseline]
    return Kept(kept, None if kept else "no-gain")


def threshold(minimum: float) -> KeepRule:
    """Every self-edit whose reward reaches ``minimum`` (SEAL's ARC rule is ``threshold(1.0)``)."""

    def keep(scored: Scored) -> Kept:
        kept = [i for i, r in scored.usable() if r >= minimum]
        return Kept(kept, None if kept else "below-threshold")

    return keep


@dataclass(frozen=True)
class RestemSettings:
    rounds: int = 2
    contexts_per_round: int = 50
    k: int = 5
    inner_seeds: int = 1
    self_edit_generation: GenerationSettings = GenerationSettings(max_new_tokens=320, temperature=1.0, top_p=0.95)
    policy_update: InnerLoopSettings = InnerLoopSettings(
        rank=16, alpha=32, target_modules=("all-linear",), lr=3e-4, epochs=2, loss_on="completion"
    )
    full_finetune: bool = False
    seed: int = 0


def train_policy(
    run: RunDir,
    contexts: Sequence[Any],
    domain: Domain,
    make_worker: Callable[[str], Worker],
    load_policy: Callable[[str], LoadedModel],
    initial_model: str,
    settings: RestemSettings,
    keep: KeepRule = best_of_k,
    reward: Reward = mean_correct,
    measure_baseline: bool = False,
    executor: Executor | None = None,
) -> str:
    """Run (or resume) every round; returns the path of the final policy.

    ``domain`` names the contexts here. ``make_worker(policy)`` builds an E-step worker on a round's
    policy (picklable for a Ray ``executor``; default: in this process); ``load_policy(policy)`` loads
    it here for the M-step. ``reward`` turns an adapter's graded probe answers into its reward, and
    ``keep`` picks the self-edits to learn from by their rewards.
    """
    if len(contexts) < settings.contexts_per_round:
        raise ValueError(
            f"--contexts-per-round {settings.contexts_per_round} exceeds the {len(contexts)} contexts available."
        )
    policy = initial_model
    for round_number in range(1, settings.rounds + 1):
        round_dir = run.path / f"round-{round_number}"
        policy_dir = round_dir / "policy"
        if (policy_dir / "config.json").is_file():
            policy = str(policy_dir)
            continue
        if (run.path / f"round-{round_number + 1}").exists():
            raise RunDirError(
                f"{policy_dir} is missing but round {round_number + 1} exists: the run is inconsistent. "
                "Restore the policy folder or start a new --out."
            )
        if round_dir.exists() and not (round_dir / SAMPLES).exists() and any(round_dir.iterdir()):
            raise RunDirError(
                f"{round_dir} is incomplete or corrupt (no {SAMPLES}); move it away and re-run to redo the round."
            )
        sample = random.Random(settings.seed * 1000 + round_number).sample(list(contexts), settings.contexts_per_round)
        workers = partial(make_worker, policy)
        records = _e_step(
            run,
            round_number,
            sample,
            domain,
            workers,
            executor or InProcessExecutor(),
            settings,
            keep,
            reward,
            measure_baseline,
        )
        loaded = load_policy(policy)
        policy = _m_step(run, round_number, loaded.model, loaded.tokenizer, records, settings)
    changed = any(
        not json.loads((run.path / f"round-{n}" / "summary.json").read_text())["policy_carried_over"]
        for n in range(1, settings.rounds + 1)
    )
    adapter = run.path / POLICY_ADAPTER
    if changed and not settings.full_finetune and not (adapter / "adapter_config.json").is_file():
        _save_policy_adapter(run, initial_model, policy, load_policy, settings.policy_update.rank * settings.rounds)
    return policy


def _e_step(
    run, round_number, contexts, domain, make_worker, executor, settings, keep, reward, measure_baseline
) -> list[dict]:
    samples_file = f"round-{round_number}/{SAMPLES}"
    done = {r["context_id"]: r for r in run.records(samples_file)}
    todo = [context for context in contexts if domain.context_id(context) not in done]
    job = partial(
        _score_job, settings=settings, reward=reward, measure_baseline=measure_baseline, round_number=round_number
    )
    adapters = (settings.k + int(measure_baseline)) * settings.inner_seeds  # per context, rejected self-edits included
    with tqdm(desc=f"round {round_number}", unit="adapter", total=len(todo) * adapters) as progress:
        for _, parts in executor.run(make_worker, job, todo):
            for part in parts:
                if isinstance(part, int):  # adapters of the context just scored (or skipped: a rejected self-edit)
                    progress.update(part)
                    continue
                chosen = keep(Scored(part["rewards"], part["baseline"]))
                part |= {"kept": chosen.indices, "keep_note": chosen.note}
                run.append(samples_file, part)
                done[part["context_id"]] = part
                progress.set_postfix_str(f"{len(done)}/{len(contexts)} contexts", refresh=False)
    return [done[domain.context_id(c)] for c in contexts]


def _score_job(
    worker: Worker, context: Any, *, settings: RestemSettings, reward: Reward, measure_baseline: bool, round_number: int
) -> Iterator[int | dict]:
    """A job: one context's self-edits written and scored on ``worker`` (see :func:`_score_context`)."""
    return _score_context(worker.domain, context, worker.inner_loop, settings, reward, measure_baseline, round_number)


def _score_context(
    domain, context, inner_loop, settings, reward, measure_baseline, round_number
) -> Iterator[int | dict]:
    """Yields how many of the context's adapters are done, as they finish (for the progress bar), then its record."""
    start = time.perf_counter()
    prompts = domain.probe_prompts(context)
    key = f"{round_number}/{domain.context_id(context)}"  # a round's samples of a context differ from the last round's
    edit_prompt, edits = sample_self_edits(inner_loop, domain, context, settings.k, settings.self_edit_generation, key)
    if edit_prompt is None:
        raise ValueError("the self-edit style writes nothing (e.g. 'none'); choose a prompt that generates self-edits")
    samples, plans, owners = [], [], []  # owners[i]: the sample index plans[i] scores, or None for the baseline
    for index, edit in enumerate(edits):
        sample = {
            "text": edit.text,
            "tokens": edit.tokens,
            "truncated": edit.truncated,
            "rejected": None,
            "seed_rewards": [],
        }
        try:
            plans += _seeded(domain.parse_self_edit(context, edit.text, edit.truncated), settings.inner_seeds)
            owners += [index] * settings.inner_seeds
        except SelfEditRejected as reason:
            sample["rejected"] = str(reason)
            yield settings.inner_seeds  # its adapters will not be trained
        samples.append(sample)
    if measure_baseline:
        plans += _seeded(domain.context_plan(context), settings.inner_seeds)
        owners += [None] * settings.inner_seeds
    baseline_rewards = []
    for owner, result in zip(owners, inner_loop.train_and_answer_each(plans, prompts, domain.answer_generation)):
        earned = reward(domain.score(context, [a.text for a in result.answers]))
        (baseline_rewards if owner is None else samples[owner]["seed_rewards"]).append(earned)
        yield 1
    yield {
        "context_id": domain.context_id(context),
        "prompt": edit_prompt,
        "samples": samples,
        "rewards": [None if s["rejected"] else statistics.fmean(s["seed_rewards"]) for s in samples],
        "baseline": statistics.fmean(baseline_rewards) if baseline_rewards else None,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _seeded(plan: TrainPlan, seeds: int) -> list[TrainPlan]:
    """The plan once per inner-loop seed; all of a context's plans train in one engine call."""
    return [reseeded(plan, s) for s in range(seeds)]


def _m_step(run: RunDir, round_number: int, model, tokenizer, records: list[dict], settings: RestemSettings) -> str:
    round_dir = run.path / f"round-{round_number}"
    eos = tokenizer.eos_token or ""
    pairs = [
        {
            "context_id": r["context_id"],
            "prompt": r["prompt"],
            "completion": r["samples"][i]["text"],
            "reward": r["rewards"][i],
        }
        for r in records
        for i in r["kept"]
    ]
    run.write_jsonl(f"round-{round_number}/kept.jsonl", pairs)
    start = time.perf_counter()
    stats = None
    plan = TrainPlan(
        tuple(TrainExample(p["completion"] + eos, prompt=p["prompt"]) for p in pairs), settings.policy_update
    )
    if not pairs:
        log.warning("Round %d kept no self-edit: the policy is carried over unchanged.", round_number)
    elif settings.full_finetune:
        stats = train_on_plan(model, tokenizer, plan, [p.requires_grad_() for p in model.parameters()], progress=True)
    else:
        update = InnerLoop(model, tokenizer, progress=True)
        stats = update.train_adapter(plan)
        model = update.merge_adapter()
    rewards = [reward for r in records for reward in _zeroed(r)]
    summary = {
        "round": round_number,
        "contexts": len(records),
        "self_edits": len(rewards),
        "mean_reward": statistics.fmean(rewards) if rewards else 0.0,
        "reward_sd_within_context": statistics.fmean(statistics.pstdev(_zeroed(r)) for r in records)
        if records
        else 0.0,
        "contexts_with_any_reward": sum(1 for r in records if max(_zeroed(r)) > 0),
        # None when the keep rule measured no context-only baseline (best-of-k, threshold)
        "contexts_improving_on_baseline": (
            sum(1 for r in records if max(_zeroed(r)) > r["baseline"])
            if records and all(r["baseline"] is not None for r in records)
            else None
        ),
        "kept": len(pairs),
        "keep_notes": {
            note: sum(1 for r in records if r["keep_note"] == note)
            for note in {r["keep_note"] for r in records}
            if note
        },
        "rejected_self_edits": sum(1 for r in records for s in r["samples"] if s["rejected"]),
        "policy_update": vars(stats) if stats else None,
        "e_step_seconds": sum(r["seconds"] for r in records),
        "m_step_seconds": time.perf_counter() - start,
        "policy_carried_over": not pairs,
    }
    run.write_json(
        f"round-{round_number}/summary.json", summary
    )  # before the policy: a round counts as done once its policy exists
    run.write_folder(f"round-{round_number}/policy", partial(_save_policy, model, tokenizer))
    print(
        f"Round {round_number}: mean reward {summary['mean_reward']:.3f}, contexts with any reward "
        f"{summary['contexts_with_any_reward']}/{len(records)}, kept {len(pairs)}, "
        f"{(summary['e_step_seconds'] + summary['m_step_seconds']) / 60:.1f} min"
    )
    return str(round_dir / "policy")


def _save_policy_adapter(
    run: RunDir, initial_model: str, policy: str, load_policy: Callable[[str], LoadedModel], rank: int
) -> None:
    """The final policy as a LoRA adapter on the initial model: each round merged one rank-r update, so
    rank r × rounds holds it exactly (:mod:`seal_lm.model.adapters`)."""
    local = Path(initial_model).expanduser()
    base_spec = str(local.resolve()) if local.exists() else initial_model  # an adapter may move; its base stays found

    def save(folder: Path) -> None:
        fit = save_difference_adapter(
            folder, base_spec, load_policy(initial_model).model, load_policy(policy).model, rank
        )
        log.info(
            "The final policy as a rank-%d adapter on %s: %.1f MB, relative error %.4f",
            fit.rank,
            base_spec,
            fit.size_bytes / 1e6,
            fit.relative_error,
        )

    run.write_folder(POLICY_ADAPTER, save)


def _zeroed(record: dict) -> list[float]:
    """A context's rewards with the rejected self-edits' None counted as 0."""
    return [reward or 0.0 for reward in record["rewards"]]


def _save_policy(model, tokenizer, folder: Path) -> None:
    """The policy as a standard HF folder."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
