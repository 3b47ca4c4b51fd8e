"""Every YAML config shipped in configs/ loads into the config dataclass of the command its header names,
and that command's settings build from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_lm.cli import COMMANDS, build_parser
from seal_lm.cli.continual_options import ContinualOptions
from seal_lm.cli.options import config_from_args
from seal_lm.cli.shared_options import ArcOptions, KnowledgeOptions

CONFIG_FOLDER = Path(__file__).parents[1] / "configs"
CONFIGS = sorted(CONFIG_FOLDER.glob("*.yaml"))


def header_command(path: Path) -> list[str]:
    """The command line after ``seal`` in the config's first lines (``#   seal eval knowledge --config ... --data x``)."""
    line = next(line for line in path.read_text().splitlines()[:3] if "seal " in line)
    words = line.split("#", 1)[1].split()
    return words[words.index("seal") + 1 :]


def test_every_config_is_found():
    assert [path.name for path in CONFIGS] == [
        "gpu-arc-llama3.2-1b.yaml",
        "gpu-knowledge-qwen2.5-7b.yaml",
        "knowledge-eval50.yaml",
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_builds_the_settings_of_the_command_its_header_names(path):
    argv = header_command(path)
    argv[argv.index("--config") + 1] = str(path)  # the header names it relative to the repository root
    _, config_class, _ = COMMANDS[tuple(argv[:2])]

    config = config_from_args(config_class, build_parser().parse_args(argv))

    config.check()  # settings that do not go together, the model spec, the device
    config.self_edit_generation()
    if isinstance(config, KnowledgeOptions):
        config.knowledge_settings()
    if isinstance(config, ArcOptions):
        config.arc_settings()
    if isinstance(config, ContinualOptions):
        config.continual_settings()


def test_the_eval50_config_reproduces_the_benchmark_table():
    args = build_parser().parse_args(["eval", "knowledge", "--config", str(CONFIG_FOLDER / "knowledge-eval50.yaml")])
    config = config_from_args(COMMANDS[("eval", "knowledge")][1], args)
    assert config.n_passages == 50 and config.target_modules == ("all-linear",)
    assert set(config.conditions) == {"base", "passage", "self-edit", "external"}


def test_the_gpu_configs_use_the_paper_models_with_vllm():
    configs = {p.name: p for p in CONFIGS if p.name.startswith("gpu-")}
    knowledge = config_from_args(
        COMMANDS[("train", "knowledge")][1],
        build_parser().parse_args(
            [
                "train",
                "knowledge",
                "--config",
                str(configs["gpu-knowledge-qwen2.5-7b.yaml"]),
                "--data",
                "train_pool.json",
            ]
        ),
    )
    arc = config_from_args(
        COMMANDS[("train", "arc")][1],
        build_parser().parse_args(["train", "arc", "--config", str(configs["gpu-arc-llama3.2-1b.yaml"])]),
    )
    assert (knowledge.model, knowledge.generator, knowledge.lora_rank, knowledge.inner_seeds) == (
        "Qwen/Qwen2.5-7B",
        "vllm",
        32,
        3,
    )
    assert (arc.model, arc.generator, arc.lora_rank, arc.k) == ("meta-llama/Llama-3.2-1B-Instruct", "vllm", 128, 15)
