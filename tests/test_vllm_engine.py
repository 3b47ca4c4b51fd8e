"""Tests for seal_lm.adapt.vllm_engine: the inner loop whose generation runs in vLLM.

vLLM needs a GPU, so these tests put a stand-in ``vllm`` package in ``sys.modules``: it offers the
calls the engine makes (``LLM(...).generate`` with per-request ``SamplingParams`` and
``LoRARequest``) and serves them with transformers and PEFT, loading the model folder and each
adapter folder *from disk*, as vLLM does. What they check is the engine's side of the contract:
the files it hands vLLM are loadable PEFT adapters that reproduce the in-process answers, every
request goes with its own adapter and seed, and adapter ids are never reused. Whether vLLM itself
serves them the same way is for a GPU run (``benchmarks/inner_loop.py``).
"""

from __future__ import annotations

import copy
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import build_model
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from seal_lm.adapt.lora import InnerLoop, InnerLoopSettings, TrainExample, TrainPlan
from seal_lm.adapt.vllm_engine import VLLM_MISSING, VLLMInnerLoop, supported_lora_rank
from seal_lm.cli import main
from seal_lm.model.generation import GenerationSettings, generate

GREEDY = GenerationSettings(max_new_tokens=8, stop=("\n",))
PROBES = ["Where is the Eiffel Tower?", "Question: Who built it? Answer:"]
PLANS = [
    TrainPlan(
        (TrainExample("The Eiffel Tower is in Paris."),),
        InnerLoopSettings(rank=4, alpha=8, lr=1e-2, epochs=3, seed=seed),
    )
    for seed in (0, 1)
] + [
    TrainPlan(
        (TrainExample("Genghis Khan founded the Mongol Empire."),),
        InnerLoopSettings(rank=4, alpha=8, lr=1e-2, epochs=3),
    )
]


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    stop: list[str] | None = None
    seed: int | None = None


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


class StandInLLM:
    """``vllm.LLM`` as the engine uses it, served by transformers + PEFT from the folders it is given."""

    def __init__(self, model: str, **engine_args):
        self.engine_args = engine_args
        self.model = AutoModelForCausalLM.from_pretrained(model)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.requests: list[tuple[str, SamplingParams, LoRARequest | None]] = []
        self.adapters: dict[int, PeftModel] = {}
        self.adapter_files: dict[int, list[str]] = {}
        created.append(self)

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        outputs = []
        for index, (prompt, sampling) in enumerate(zip(prompts, params)):
            adapter = lora_request[index] if isinstance(lora_request, list) else lora_request
            self.requests.append((prompt, sampling, adapter))
            model = self.model if adapter is None else self._adapter(adapter)
            settings = GenerationSettings(
                sampling.max_tokens, sampling.temperature, sampling.top_p, tuple(sampling.stop or ()), 1, sampling.seed
            )
            result = generate(model, self.tokenizer, [prompt], settings)[0]
            finish = "length" if result.truncated else "stop"
            outputs.append(
                types.SimpleNamespace(
                    outputs=[
                        types.SimpleNamespace(text=result.text, token_ids=[0] * result.tokens, finish_reason=finish)
                    ]
                )
            )
        return outputs

    def _adapter(self, request: LoRARequest) -> PeftModel:
        if request.lora_int_id not in self.adapters:  # vLLM too loads an id once and caches it
            self.adapter_files[request.lora_int_id] = sorted(p.name for p in Path(request.lora_path).iterdir())
            self.adapters[request.lora_int_id] = PeftModel.from_pretrained(
                copy.deepcopy(self.model), request.lora_path
            ).eval()
        return self.adapters[request.lora_int_id]


created: list[StandInLLM] = []


@pytest.fixture
def stand_in_vllm(monkeypatch):
    """Install the stand-in as the ``vllm`` package for one test."""
    package, lora, request = (
        types.ModuleType("vllm"),
        types.ModuleType("vllm.lora"),
        types.ModuleType("vllm.lora.request"),
    )
    package.LLM, package.SamplingParams, request.LoRARequest = StandInLLM, SamplingParams, LoRARequest
    for name, module in (("vllm", package), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    created.clear()
    yield created


@pytest.fixture
def engine(stand_in_vllm, tiny_model_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return VLLMInnerLoop(model, tiny_tokenizer, str(tiny_model_dir), max_lora_rank=4)


def test_answers_and_adapters_match_the_in_process_engine(engine, tiny_tokenizer):
    reference = InnerLoop(build_model(len(tiny_tokenizer), seed=0), tiny_tokenizer)
    expected = reference.train_and_answer(PLANS, PROBES, GREEDY)
    results = engine.train_and_answer(PLANS, PROBES, GREEDY)
    assert [[a.text for a in r.answers] for r in results] == [[a.text for a in r.answers] for r in expected]
    for got, want in zip(results, expected):
        assert got.adapter_state.keys() == want.adapter_state.keys()
        assert all((got.adapter_state[n] - want.adapter_state[n]).abs().max() < 1e-6 for n in want.adapter_state)
        assert got.stats.steps == want.stats.steps
    # The three adapters must differ, or the check above could not tell them apart.
    texts = {tuple(a.text for a in r.answers) for r in results}
    assert len({tuple(float(t.sum()) for t in r.adapter_state.values()) for r in results}) == 3, texts


def test_every_candidate_is_served_as_its_own_peft_adapter_in_one_call(engine):
    engine.train_and_answer(PLANS, PROBES, GREEDY)
    engine.train_and_answer(PLANS[:1], PROBES, GREEDY)
    llm = engine.llm
    adapters = [adapter for _, _, adapter in llm.requests]
    assert [a.lora_int_id for a in adapters] == [1, 1, 2, 2, 3, 3, 4, 4]  # adapter-major, never reused
    assert all(
        "adapter_config.json" in files and "adapter_model.safetensors" in files for files in llm.adapter_files.values()
    )
    assert not any(Path(a.lora_path).exists() for a in adapters)  # each call cleans up its adapter folders
    assert [p for _, p, _ in llm.requests][0].stop == ["\n"]


def test_identical_prompts_are_sampled_with_different_seeds(engine):
    sampling = GenerationSettings(max_new_tokens=6, temperature=1.0, top_p=0.95, seed=40)
    engine.generate_with_base(["Read the passage below"] * 3, sampling)
    seeds = [params.seed for _, params, adapter in engine.llm.requests if adapter is None]
    assert seeds == [40, 41, 42]


def test_the_engine_asks_vllm_for_a_supported_rank_and_the_trained_dtype(engine):
    arguments = engine.llm.engine_args
    assert arguments["enable_lora"] is True and arguments["enable_prefix_caching"] is True
    assert arguments["max_lora_rank"] == 8  # rank 4 rounds up to vLLM's smallest kernel size
    assert arguments["dtype"] == "float32"
    assert [supported_lora_rank(r) for r in (1, 8, 9, 32, 100, 128)] == [8, 8, 16, 32, 128, 128]


def test_release_returns_the_plain_base_model_and_removes_the_adapter_folder(engine):
    engine.train_and_answer(PLANS[:1], PROBES, GREEDY)
    folder = Path(engine.adapter_dir)
    model = engine.release()
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert engine.llm is None and not folder.exists()


def test_without_vllm_the_engine_says_how_to_install_it(monkeypatch, tiny_model_dir, tiny_tokenizer):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(ValueError, match="pip install 'seal-lm\\[vllm\\]'"):
        VLLMInnerLoop(build_model(len(tiny_tokenizer)), tiny_tokenizer, str(tiny_model_dir), max_lora_rank=4)
    assert "--generator hf" in VLLM_MISSING


# --- the command line ------------------------------------------------------------------------------


def knowledge_args(tiny_model_dir, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "knowledge",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--conditions",
        "base,passage",
        "--k",
        "1",
        "--epochs",
        "2",
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--answer-max-tokens",
        "4",
        "--bootstrap-samples",
        "50",
        *extra,
    ]


@pytest.fixture
def passages(tmp_path) -> Path:
    data = [
        {
            "title": "Eiffel Tower",
            "context": "The Eiffel Tower is in Paris. It was completed in 1889.",
            "questions": [
                {"question": "Where is the Eiffel Tower?", "answers": ["Paris"]},
                {"question": "When was it completed?", "answers": ["1889"]},
            ],
        }
    ]
    path = tmp_path / "passages.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("objective", ["sft", "distill"])  # vLLM only generates: training is the sequential engine's
def test_eval_with_generator_vllm_records_what_the_hf_generator_records(
    stand_in_vllm, tiny_model_dir, passages, tmp_path, objective
):
    assert main(knowledge_args(tiny_model_dir, passages, tmp_path / "hf", "--inner-objective", objective)) == 0
    assert (
        main(
            knowledge_args(
                tiny_model_dir, passages, tmp_path / "vllm", "--generator", "vllm", "--inner-objective", objective
            )
        )
        == 0
    )
    assert [llm.engine_args["max_lora_rank"] for llm in stand_in_vllm] == [8]
    assert any(adapter is not None for _, _, adapter in stand_in_vllm[0].requests)  # the passage condition's adapter

    def answers(run: Path) -> list:
        records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
        return sorted(
            (r["condition"], g["question_id"], g["raw_answer"], g["correct"]) for r in records for g in r["grades"]
        )

    assert answers(tmp_path / "vllm") == answers(tmp_path / "hf")


def test_generator_vllm_with_the_batched_engine_is_refused(tiny_model_dir, passages, tmp_path, capsys):
    assert (
        main(knowledge_args(tiny_model_dir, passages, tmp_path / "run", "--generator", "vllm", "--engine", "batched"))
        == 2
    )
    assert "--engine sequential" in capsys.readouterr().err


def test_an_unknown_generator_is_named(tiny_model_dir, passages, tmp_path, capsys):
    assert main(knowledge_args(tiny_model_dir, passages, tmp_path / "run", "--generator", "tgi")) == 2
    assert "tgi" in capsys.readouterr().err
