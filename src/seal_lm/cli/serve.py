"""``seal serve``: a model that keeps learning, behind an OpenAI-compatible API (``pip install 'seal-lm[serve]'``).

The server answers with committed versions of the run's ledger while one background thread learns
the documents posted to it, through the same continual loop as ``seal adapt``; see
:mod:`seal_lm.serve.app` for the endpoints. The run directory holds::

    RUN/ledger/            the versions (the same ledger ``seal adapt`` writes: either command can continue a run)
    RUN/documents.sqlite   the durable queue of posted documents

How the cores are shared: request handling (one completion at a time) and learning each run on their
own thread with their own number of compute threads (``--serve-threads``, ``--learn-threads``; by
default half of ``--threads`` each), so the two never oversubscribe the CPU.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from seal_lm.cli.adapt import LEDGER
from seal_lm.cli.continual_options import ContinualOptions
from seal_lm.cli.options import option
from seal_lm.cli.report import see_it
from seal_lm.continual.ledger import DATABASE, INITIAL, Ledger
from seal_lm.continual.versions import ledger_setup
from seal_lm.domains.knowledge.domain import KnowledgeDomain
from seal_lm.loops.continual import ContinualLearner
from seal_lm.model.completion import CompletionWorker
from seal_lm.model.loading import DEFAULT_MODEL, LoadedModel, load_model
from seal_lm.model.prompting import PromptFormatter
from seal_lm.serve.documents import DocumentQueue
from seal_lm.serve.learner import BackgroundLearner
from seal_lm.serve.service import Access, Limits, Service
from seal_lm.serve.versions import ModelVersions
from seal_lm.threads import share, usable_cores

log = logging.getLogger(__name__)

DOCUMENTS = "documents.sqlite"
SERVE_EXTRA = "pip install 'seal-lm[serve]'"


@dataclass
class ServeConfig(ContinualOptions):
    without_flags: ClassVar[tuple[str, ...]] = (*ContinualOptions.without_flags, "data", "out")

    run: str = option(
        "",
        "Run directory: a new one, or one seal serve or seal adapt wrote (its versions are served as they are) (required).",
    )
    model: str = option(
        "", f"The model a new run starts from (default: {DEFAULT_MODEL}); an existing run uses its own."
    )
    host: str = option("127.0.0.1", "Address to listen on (127.0.0.1: this machine only).")
    port: int = option(8000, "Port to listen on.")
    api_key_env: str = option(
        "SEAL_API_KEY",
        "Environment variable holding the API key that requests must send as 'Authorization: Bearer <key>'.",
    )
    allow_unauthenticated_writes: bool = option(
        False, "Without an API key, still accept documents and rollbacks (only when listening on loopback)."
    )
    open_reads: bool = option(False, "With an API key, let models, completions and listings be read without it.")
    max_tokens: int = option(512, "The most tokens one completion may ask for (max_tokens above it is refused).")
    max_queue: int = option(100, "Documents waiting to be learned before new ones are refused (429).")
    max_body_bytes: int = option(1_000_000, "Largest request body accepted (413 above it).")
    max_loaded_versions: int = option(4, "Versions kept in memory for answering (each costs only its adapted layers).")
    serve_threads: int = option(0, "Compute threads answering requests (0: half of --threads).")
    learn_threads: int = option(0, "Compute threads learning documents (0: the other half).")

    def check_serving(self) -> tuple[str | None, int, int]:
        """Check everything about serving before any model is loaded; returns the API key and the thread split."""
        if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
            raise ValueError(f"seal serve needs FastAPI and uvicorn: {SERVE_EXTRA}")
        if not self.run:
            raise ValueError("--run is required: the run directory to serve (a new folder starts a new run).")
        run = Path(self.run)
        if run.exists() and not run.is_dir():
            raise ValueError(f"--run {run} is a file; pass a folder.")
        api_key = os.environ.get(self.api_key_env) or None
        if self.allow_unauthenticated_writes and not _is_loopback(self.host):
            raise ValueError(
                f"--allow-unauthenticated-writes is only for loopback addresses; set {self.api_key_env} to serve on {self.host}."
            )
        for name in ("max_tokens", "max_queue", "max_body_bytes", "max_loaded_versions"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
        _check_port_free(self.host, self.port)
        serve_threads, learn_threads = thread_split(self.serve_threads, self.learn_threads)
        return api_key, serve_threads, learn_threads

    def run_model(self) -> tuple[str, str]:
        """The model spec and dtype of the run: the ledger's for an existing run, else ``--model`` and ``--dtype``."""
        ledger_folder = Path(self.run) / LEDGER
        if (ledger_folder / DATABASE).is_file():
            with Ledger.open(ledger_folder, readonly=True) as ledger:
                setup = ledger_setup(ledger)
            if self.model and self.model != setup["model"]:
                raise ValueError(
                    f"--run {self.run} learns {setup['model']!r}; drop --model (or pass that one), or use a new --run."
                )
            return setup["model"], setup["dtype"]
        return self.model or DEFAULT_MODEL, self.dtype


def serve(config: ServeConfig) -> None:
    """Serve the run until stopped (Ctrl-C or SIGTERM); the document being learned is then learned again at the next start."""
    import uvicorn

    from seal_lm.serve.app import build_app

    service, access = start_service(config)
    threads = f"{service.completions.threads} thread(s) answering and {service.learner.threads} learning"
    writes = (
        "with the API key"
        if access.api_key
        else "open (loopback)"
        if access.open_writes
        else f"disabled (set {config.api_key_env})"
    )
    print(
        f"Serving {config.run} (version {service.resolve('seal')} is current) on http://{config.host}:{config.port}/v1 with {threads}; writes {writes}."
    )
    try:
        uvicorn.run(build_app(service, access), host=config.host, port=config.port, log_level="warning")
    finally:
        service.learner.stop(timeout=0)
    if service.learner.current_document:
        print(f"Stopped while learning {service.learner.current_document}; it is learned again at the next start.")
    print(stopped_summary(Path(config.run)))


def stopped_summary(run: Path) -> str:
    """What ``seal serve`` ends with: the run's current version, its updates by decision, and its report line."""
    with Ledger.open(run / LEDGER, readonly=True) as ledger:
        current = ledger.current().id
        decisions = Counter(update.record.decision for update in ledger.updates())
    decisions.pop(INITIAL, None)  # the base model's version, not an update
    updates = ", ".join(f"{count} {decision}" for decision, count in sorted(decisions.items())) or "none"
    return f"Stopped: version {current} is current; updates so far: {updates}.\n{see_it(run)}"


def start_service(config: ServeConfig) -> tuple[Service, Access]:
    """Check the settings, load the model, open the run's ledger and queue, and start the learner."""
    api_key, serve_threads, learn_threads = config.check_serving()
    spec, dtype = config.run_model()
    config = replace(config, model=spec, dtype=dtype)
    settings = config.continual_settings()
    run = Path(config.run)
    run.mkdir(parents=True, exist_ok=True)
    print(f"Loading {spec} ...")
    loaded = load_model(spec, dtype=dtype, device=config.device, prompt_format=config.prompt_format)
    versions = ModelVersions(loaded, run / LEDGER, config.target_modules, config.max_loaded_versions)
    domain = KnowledgeDomain(PromptFormatter(loaded.tokenizer, loaded.chat), config.knowledge_settings())

    def open_learner(ledger: Ledger) -> ContinualLearner:
        inner_loop = config.inner_loop(versions.fresh_copy(), loaded.tokenizer, spec)
        return ContinualLearner.open(ledger, inner_loop, domain, settings, spec)

    documents = DocumentQueue(run / DOCUMENTS)
    learner = BackgroundLearner(run / LEDGER, documents, open_learner, threads=learn_threads)
    learner.start()
    limits = Limits(max_tokens=config.max_tokens, max_queue=config.max_queue)
    service = Service(run / LEDGER, versions, documents, learner, CompletionWorker(serve_threads), limits)
    return service, Access(api_key, config.allow_unauthenticated_writes, config.open_reads, config.max_body_bytes)


def thread_split(serve_threads: int, learn_threads: int) -> tuple[int, int]:
    """Compute threads for answering and for learning: given, or half of ``--threads`` each (at least one)."""
    cores = usable_cores()
    serve_threads = serve_threads or share(cores, 2)
    learn_threads = learn_threads or max(1, cores - serve_threads)
    if serve_threads < 0 or learn_threads < 0:
        raise ValueError("--serve-threads and --learn-threads must be positive (0: automatic).")
    return serve_threads, learn_threads


def load_version(run: str | Path, version: int = 0) -> tuple[LoadedModel, int]:
    """The model of a run's ``version`` (0: the current one), as ``seal chat`` answers with it."""
    folder = Path(run) / LEDGER if (Path(run) / LEDGER / DATABASE).is_file() else Path(run)
    with Ledger.open(folder, readonly=True) as ledger:
        setup = ledger_setup(ledger)
        number = version or ledger.current().id
        ledger.get(number)  # an unknown version fails here, before the model is loaded
    loaded = load_model(setup["model"], dtype=setup["dtype"])
    model = ModelVersions(loaded, folder, setup["inner_loop"]["target_modules"], max_loaded=1).model(number)
    return LoadedModel(model, loaded.tokenizer, loaded.spec, loaded.chat), number


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check_port_free(host: str, port: int) -> None:
    """Fail now, not after the model load, if ``host:port`` cannot be listened on."""
    if not 0 < port < 65536:
        raise ValueError(f"--port {port}: give a port from 1 to 65535.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ValueError(
                f"cannot listen on {host}:{port} ({err.strerror}); pick another --port or --host."
            ) from None
