"""What the loops' jobs run on: a domain and an inner-loop engine over one model replica.

A worker is built in the process that runs the jobs (the driver, or each Ray actor), by a picklable
callable the command line provides; see :mod:`seal_lm.runs.executor`.
"""

from __future__ import annotations

from dataclasses import dataclass

from seal_lm.adapt.lora import InnerLoopEngine
from seal_lm.domains.base import Domain


@dataclass
class Worker:
    domain: Domain
    inner_loop: InnerLoopEngine
