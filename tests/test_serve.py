"""``seal serve`` end to end: a real uvicorn server on 127.0.0.1 with a tiny random model, asked through the
official ``openai`` client (and raw HTTP where the client cannot send what is tested)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import openai
import pytest
import uvicorn

from seal_lm.cli import main
from seal_lm.cli.chat import ChatConfig, chat
from seal_lm.cli.serve import ServeConfig, start_service
from seal_lm.continual.ledger import ACCEPTED, Ledger
from seal_lm.serve.app import build_app

KEY = "test-key"
DOCUMENT = {
    "title": "Eiffel Tower",
    "text": "The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.",
    "questions": [{"question": "When was the Eiffel Tower completed?", "answers": ["1889"]}],
}
# Small and fast for a tiny model; min_gain -1 accepts an update whatever its probes say, so versions are made.
LEARNING = {"epochs": 2, "self_edit_max_tokens": 24, "probe_max_tokens": 24, "answer_max_tokens": 8, "min_gain": -1.0}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(config: ServeConfig) -> Iterator[str]:
    """The service of ``config`` behind uvicorn on a free loopback port, stopped on leaving; yields the base URL."""
    service, access = start_service(config)
    server = uvicorn.Server(
        uvicorn.Config(build_app(service, access), host="127.0.0.1", port=config.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
        service.learner.stop(30)


def serve_config(run: Path, model: Path, **overrides) -> ServeConfig:
    return ServeConfig(run=str(run), model=str(model), port=free_port(), **(LEARNING | overrides))


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def wait_for(url: str, document_id: str, statuses=("accepted", "rejected", "failed"), timeout: float = 120) -> dict:
    """Poll a document until its status is one of ``statuses`` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = httpx2.get(f"{url}/v1/documents/{document_id}", headers={"Authorization": f"Bearer {KEY}"}).json()
        if shown["status"] in statuses:
            return shown
        time.sleep(0.05)
    raise AssertionError(f"{document_id} did not reach {statuses} within {timeout} s (last: {shown['status']})")


def post_document(url: str, document: dict = DOCUMENT) -> httpx2.Response:
    return httpx2.post(f"{url}/v1/documents", json=document, headers={"Authorization": f"Bearer {KEY}"})


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir) -> Iterator[str]:
    """One server with an API key for the tests that only read, or learn one document each."""
    os.environ["SEAL_TEST_API_KEY"] = KEY
    try:
        with running_server(
            serve_config(tmp_path_factory.mktemp("served"), tiny_model_dir, api_key_env="SEAL_TEST_API_KEY")
        ) as url:
            yield url
    finally:
        del os.environ["SEAL_TEST_API_KEY"]


# -- models and completions --------------------------------------------------------------------------


def test_models_lists_every_version_and_the_alias(server):
    ids = [model.id for model in client(server).models.list()]

    assert ids[0] == "seal" and "seal-v1" in ids
    assert ids[1:] == [f"seal-v{n}" for n in range(1, len(ids))]


def test_chat_names_the_version_that_answered_and_counts_tokens(server):
    raw = client(server).chat.completions.with_raw_response.create(
        model="seal-v1",
        messages=[{"role": "user", "content": "Where is the Eiffel Tower?"}],
        max_tokens=6,
        temperature=0,
    )
    response = raw.parse()

    assert raw.headers["x-seal-version"] == "1" and response.model == "seal-v1"
    assert response.choices[0].message.role == "assistant"
    assert 1 <= response.usage.completion_tokens <= 6
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.choices[0].finish_reason in ("stop", "length")


def test_streamed_chat_is_the_same_text_as_the_whole_answer(server):
    asked = dict(
        model="seal-v1", messages=[{"role": "user", "content": "Tell me about Paris."}], max_tokens=12, temperature=0
    )
    whole = client(server).chat.completions.create(**asked)
    chunks = list(client(server).chat.completions.create(**asked, stream=True, stream_options={"include_usage": True}))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert {c.model for c in chunks} == {"seal-v1"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_plain_and_streamed(server):
    openai_client = client(server)
    whole = openai_client.completions.create(model="seal-v1", prompt="The Eiffel Tower", max_tokens=8, temperature=0)
    streamed = "".join(
        c.choices[0].text
        for c in openai_client.completions.create(
            model="seal-v1", prompt="The Eiffel Tower", max_tokens=8, temperature=0, stream=True
        )
    )

    assert whole.object == "text_completion" and whole.model == "seal-v1"
    assert streamed == whole.choices[0].text
    assert whole.usage.completion_tokens <= 8


def test_a_seed_makes_sampling_reproducible_and_stop_strings_cut(server):
    def sample(seed: int, **extra) -> str:
        return (
            client(server)
            .completions.create(
                model="seal-v1", prompt="Paris", max_tokens=16, temperature=1.0, top_p=0.9, seed=seed, **extra
            )
            .choices[0]
            .text
        )

    assert sample(1) == sample(1)
    assert len({sample(seed) for seed in range(4)}) > 1
    full = sample(2)
    stop = next(character for character in full[2:] if character.isascii() and character.isalpha())
    assert sample(2, stop=[stop]) == full[: full.index(stop)]


# -- learning while serving --------------------------------------------------------------------------


def test_a_learned_document_becomes_a_new_version_and_rollback_moves_the_alias_back(server):
    openai_client = client(server)
    question = [{"role": "user", "content": "When was the Eiffel Tower completed?"}]
    before = openai_client.chat.completions.create(model="seal", messages=question, max_tokens=8, temperature=0)
    current = int(before.model.removeprefix("seal-v"))

    posted = post_document(server)
    assert posted.status_code == 202 and posted.json()["status"] in ("queued", "learning")
    shown = wait_for(server, posted.json()["id"])

    assert shown["status"] == "accepted", shown
    new = shown["version"]
    assert new > current and shown["update"]["decision"] == ACCEPTED
    assert shown["update"]["questions"] == ["When was the Eiffel Tower completed?"]
    assert len(shown["update"]["scores_before"]) == len(shown["update"]["scores_after"]) == 1
    assert f"seal-v{new}" in [m.id for m in openai_client.models.list()]
    assert (
        openai_client.chat.completions.create(model="seal", messages=question, max_tokens=8, temperature=0).model
        == f"seal-v{new}"
    )
    pinned = openai_client.chat.completions.create(model=before.model, messages=question, max_tokens=8, temperature=0)
    assert (
        pinned.choices[0].message.content == before.choices[0].message.content
    )  # an old version answers exactly as before

    version = httpx2.get(f"{server}/v1/versions/{new}", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert version["parent"] == current and version["document"]["id"] == posted.json()["id"]
    assert version["document"]["title"] == "Eiffel Tower" and "self_edit" in version["update"]

    rolled = httpx2.post(f"{server}/v1/versions/{current}/rollback", headers={"Authorization": f"Bearer {KEY}"})
    assert rolled.status_code == 200 and rolled.json()["previous"] == new
    again = openai_client.chat.completions.create(model="seal", messages=question, max_tokens=8, temperature=0)
    assert again.model == before.model and again.choices[0].message.content == before.choices[0].message.content
    listing = httpx2.get(f"{server}/v1/versions", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert listing["current"] == current


def test_requests_keep_being_answered_by_committed_versions_while_a_document_is_learned(tmp_path, tiny_model_dir):
    config = serve_config(tmp_path / "run", tiny_model_dir, epochs=200, allow_unauthenticated_writes=True)
    with running_server(config) as url:
        document = post_document(url).json()["id"]
        wait_for(url, document, statuses=("learning",))
        openai_client = client(url)

        def ask(i: int) -> str:
            return openai_client.chat.completions.create(
                model="seal", messages=[{"role": "user", "content": f"Question {i}"}], max_tokens=4, temperature=0
            ).model

        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(ask, range(8)))
        committed = {v["model"] for v in httpx2.get(f"{url}/v1/versions").json()["data"]}
        learning_meanwhile = httpx2.get(f"{url}/v1/documents/{document}").json()["status"]
        assert wait_for(url, document)["status"] == "accepted"

    assert len(answered) == 8 and set(answered) <= committed
    assert learning_meanwhile == "learning", "the requests did not overlap the learning (make it longer)"


# -- bad requests ------------------------------------------------------------------------------------


def test_bad_requests_get_openai_shaped_errors(server):
    openai_client = client(server)
    with pytest.raises(openai.NotFoundError, match=r"seal-v999.*Available: seal, seal-v1"):
        openai_client.chat.completions.create(model="seal-v999", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="at most 512"):
        openai_client.chat.completions.create(
            model="seal", messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
    with pytest.raises(openai.UnprocessableEntityError, match="frobnicate"):
        openai_client.chat.completions.create(
            model="seal", messages=[{"role": "user", "content": "hi"}], extra_body={"frobnicate": 1}
        )
    with pytest.raises(openai.UnprocessableEntityError, match="messages"):
        openai_client.chat.completions.create(model="seal", messages=[])

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    malformed = httpx2.post(f"{server}/v1/chat/completions", content=b'{"model": "seal",', headers=headers)
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
    too_large = httpx2.post(f"{server}/v1/documents", content=b"x" * 1_000_001, headers=headers)
    assert too_large.status_code == 413 and too_large.json()["error"]["type"] == "request_too_large"
    unknown = httpx2.get(f"{server}/v1/documents/doc-999", headers=headers)
    assert unknown.status_code == 404 and "doc-999" in unknown.json()["error"]["message"]


def test_api_key_guards_reads_and_writes(server):
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        client(server, key="wrong").models.list()
    missing = httpx2.get(f"{server}/v1/models")
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]["message"]
    assert httpx2.post(f"{server}/v1/documents", json=DOCUMENT).status_code == 401
    assert httpx2.get(f"{server}/health").status_code == 200


def test_without_a_key_writes_are_refused_unless_allowed_on_loopback(tmp_path, tiny_model_dir):
    with running_server(serve_config(tmp_path / "run", tiny_model_dir)) as url:
        refused = post_document(url)
        readable = httpx2.get(f"{url}/v1/models")
    assert refused.status_code == 403 and "SEAL_API_KEY" in refused.json()["error"]["message"]
    assert readable.status_code == 200

    with pytest.raises(ValueError, match="only for loopback"):
        serve_config(
            tmp_path / "other", tiny_model_dir, host="0.0.0.0", allow_unauthenticated_writes=True
        ).check_serving()


def test_a_full_queue_answers_429(tmp_path, tiny_model_dir):
    config = serve_config(tmp_path / "run", tiny_model_dir, epochs=100, max_queue=1, allow_unauthenticated_writes=True)
    with running_server(config) as url:
        first = post_document(url)
        wait_for(url, first.json()["id"], statuses=("learning",))
        second, third = (post_document(url, DOCUMENT | {"title": f"copy {i}"}) for i in range(2))
    assert (first.status_code, second.status_code, third.status_code) == (202, 202, 429)
    assert "waiting" in third.json()["error"]["message"] and third.json()["error"]["type"] == "rate_limit_error"


def test_bad_settings_fail_before_the_model_is_loaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        sys.modules["seal_lm.cli.serve"], "load_model", lambda *a, **k: pytest.fail("the model was loaded")
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--run", str(tmp_path / "run"), "--port", str(port)]) == 2
    assert "cannot listen" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "--run is required" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_serve_ends_with_the_current_version_and_the_report_line(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)  # a server stopped as soon as it started
    run = tmp_path / "run"

    assert main(["serve", "--run", str(run), "--model", str(tiny_model_dir), "--port", str(free_port())]) == 0

    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-2] == "Stopped: version 1 is current; updates so far: none."
    assert printed[-1] == f"See it at a glance: seal report {run} --out {run.name}.html"


def test_an_existing_run_is_served_with_its_own_model(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    assert ServeConfig(run=str(run)).run_model() == ("bundled:smollm2-135m-instruct", "float32")  # a new run
    with running_server(serve_config(run, tiny_model_dir)):
        pass

    assert ServeConfig(run=str(run)).run_model() == (str(tiny_model_dir), "float32")
    with pytest.raises(ValueError, match="drop --model"):
        ServeConfig(run=str(run), model="bundled:smollm2-135m-instruct").run_model()


# -- crash safety ------------------------------------------------------------------------------------


def test_kill_9_while_learning_then_restart_learns_every_document_exactly_once(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "seal_lm",
        "serve",
        "--run",
        str(run),
        "--model",
        str(tiny_model_dir),
        "--port",
        str(port),
        "--allow-unauthenticated-writes",
        "--epochs",
        "100",
        "--self-edit-max-tokens",
        "24",
        "--probe-max-tokens",
        "24",
        "--answer-max-tokens",
        "8",
        "--min-gain",
        "-1",
    ]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    url = f"http://127.0.0.1:{port}"

    log = tmp_path / "server.log"

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=open(log, "a"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(f"{url}/health").status_code == 200:
                    return process
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        process.kill()
        raise AssertionError("the server did not start within 120 s")

    process = start()
    try:
        ids = [post_document(url, DOCUMENT | {"title": f"note {i}"}).json()["id"] for i in range(2)]
        wait_for(url, ids[0], statuses=("learning",))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    process = start()
    try:
        finished = [wait_for(url, document)["status"] for document in ids]
        current = httpx2.get(f"{url}/v1/versions").json()["current"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)

    assert finished == ["accepted", "accepted"]
    with Ledger.open(run / "ledger", readonly=True) as ledger:
        learned = [u.record.document_id for u in ledger.updates() if u.record.decision == ACCEPTED]
        assert learned == ids  # each exactly once, in order
        assert current == ledger.current().id == ledger.versions()[-1].id == 3


# -- seal chat ---------------------------------------------------------------------------------------


def test_chat_answers_once_or_holds_a_conversation(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv(
        "OMP_NUM_THREADS", "1"
    )  # the server answers with one thread: the same sums, the same greedy answer
    run = tmp_path / "run"
    with running_server(serve_config(run, tiny_model_dir, allow_unauthenticated_writes=True)) as url:
        wait_for(url, post_document(url).json()["id"])
        expected = (
            client(url)
            .chat.completions.create(
                model="seal-v2", messages=[{"role": "user", "content": "Where is it?"}], max_tokens=10, temperature=0
            )
            .choices[0]
            .message.content
        )
    capsys.readouterr()

    chat(ChatConfig(question="Where is it?", run=str(run), version=2, max_tokens=10, temperature=0))
    assert capsys.readouterr().out == expected + "\n"

    lines = iter(["Where is it?", "/reset", "Where is it?", ""])
    chat(ChatConfig(run=str(run), max_tokens=10, temperature=0), read=lambda prompt: next(lines))
    out = capsys.readouterr().out
    assert out.startswith(f"Talking to version 2 of {run}") and out.count(expected + "\n") == 2

    assert main(["chat", "--run", str(run), "--version", "9", "hi"]) == 2
    assert "no version 9" in capsys.readouterr().err


def test_chat_works_on_any_model_and_a_seed_repeats_a_sampled_answer(tiny_model_dir, capsys):
    chat(ChatConfig(question="Hello", model=str(tiny_model_dir), max_tokens=8, temperature=1.0, seed=5))
    first = capsys.readouterr().out
    chat(ChatConfig(question="Hello", model=str(tiny_model_dir), max_tokens=8, temperature=1.0, seed=5))
    assert capsys.readouterr().out == first and first.strip()


def test_documents_listing_shows_the_queue(server):
    listing = httpx2.get(f"{server}/v1/documents", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert listing["object"] == "list"
    assert all(set(d) >= {"id", "status", "title", "update"} for d in listing["data"])
    assert json.dumps(listing)  # plain JSON all the way down
