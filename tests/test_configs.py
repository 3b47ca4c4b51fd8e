"""Every YAML config shipped in configs/ loads into its command's config dataclass."""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_lm.cli import build_parser
from seal_lm.cli.eval_knowledge import EvalKnowledgeConfig
from seal_lm.cli.options import config_from_args

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_its_header_names_the_command(path):
    first_lines = path.read_text().splitlines()[:3]
    command = next(line.split("#", 1)[1].split() for line in first_lines if "seal " in line)
    assert command[:3] == ["seal", "eval", "knowledge"]
    args = build_parser().parse_args(["eval", "knowledge", "--config", str(path)])

    config = config_from_args(EvalKnowledgeConfig, args)

    assert config.data and config.n_passages > 0
    assert set(config.conditions) <= {"base", "passage", "self-edit", "external"}
