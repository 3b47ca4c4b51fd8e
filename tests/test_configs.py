"""Every YAML config shipped in configs/ loads into the config dataclass of the command its header names."""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_lm.cli import COMMANDS, build_parser
from seal_lm.cli.options import config_from_args

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def header_command(path: Path) -> list[str]:
    """``seal GROUP NAME`` from the config's first lines (``#   seal eval knowledge --config ...``)."""
    line = next(line for line in path.read_text().splitlines()[:3] if "seal " in line)
    words = line.split("#", 1)[1].split()
    return words[words.index("seal") + 1 : words.index("seal") + 3]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_into_the_command_its_header_names(path):
    group, name = header_command(path)
    _, config_class, _ = COMMANDS[(group, name)]
    args = build_parser().parse_args([group, name, "--config", str(path)])

    config = config_from_args(config_class, args)

    config.check()  # raises on a misspelt choice (engine, generator, dtype)


def test_the_eval50_config_reproduces_the_benchmark_table():
    args = build_parser().parse_args(["eval", "knowledge", "--config", str(Path(__file__).parents[1] / "configs" / "knowledge-eval50.yaml")])
    config = config_from_args(COMMANDS[("eval", "knowledge")][1], args)
    assert config.n_passages == 50 and config.target_modules == ("all-linear",)
    assert set(config.conditions) == {"base", "passage", "self-edit", "external"}


def test_the_gpu_configs_use_the_paper_models_with_vllm():
    configs = {p.name: p for p in CONFIGS if p.name.startswith("gpu-")}
    knowledge = config_from_args(COMMANDS[("train", "knowledge")][1], build_parser().parse_args(
        ["train", "knowledge", "--config", str(configs["gpu-knowledge-qwen2.5-7b.yaml"])]))
    arc = config_from_args(COMMANDS[("train", "arc")][1], build_parser().parse_args(
        ["train", "arc", "--config", str(configs["gpu-arc-llama3.2-1b.yaml"])]))
    assert (knowledge.model, knowledge.generator, knowledge.lora_rank, knowledge.inner_seeds) == ("Qwen/Qwen2.5-7B", "vllm", 32, 3)
    assert (arc.model, arc.generator, arc.lora_rank, arc.k) == ("meta-llama/Llama-3.2-1B-Instruct", "vllm", 128, 15)
