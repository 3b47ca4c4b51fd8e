"""The HTTP face of :class:`~seal_lm.serve.service.Service`: an OpenAI-compatible API plus documents and versions.

- ``GET /v1/models``; ``POST /v1/chat/completions`` and ``POST /v1/completions`` (``stream=true`` sends
  server-sent events). Every answer names the version that gave it: the ``model`` field
  (``seal-vN``) and the ``X-Seal-Version`` header.
- ``POST /v1/documents`` (202: queued, on disk), ``GET /v1/documents[/{id}]``.
- ``GET /v1/versions[/{v}]``, ``POST /v1/versions/{v}/rollback``.

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for malformed
JSON or a request beyond the limits, 422 for unknown or invalid fields, 401/403 for access, 404 for an
unknown model, document or version, 413 for a body over the limit, 429 for a full queue.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from seal_lm.model.completion import CompletionStream
from seal_lm.serve.service import Access, Service, ServiceError, model_id

VERSION_HEADER = "X-Seal-Version"


# -- requests -------------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    """The sampling fields both completion endpoints take (OpenAI's names and defaults)."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(None, max_length=4)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    user: str | None = None

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str]


class QuestionIn(_Request):
    question: str = Field(min_length=1)
    answers: list[str] = Field(min_length=1)


class DocumentRequest(_Request):
    title: str = Field("", max_length=1000)
    text: str = Field(min_length=1)
    questions: list[QuestionIn] = Field(default_factory=list, max_length=100)


# -- the app --------------------------------------------------------------------------------------


def build_app(service: Service, access: Access) -> FastAPI:
    """The FastAPI app serving ``service`` under ``access``'s rules."""
    app = FastAPI(title="seal-lm", summary="A model that keeps learning, behind an OpenAI-compatible API.")
    reads, writes = Depends(_reads_guard(access)), Depends(_writes_guard(access))
    _handle_errors(app)
    app.add_middleware(_BodyLimit, max_bytes=access.max_body_bytes)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok" if service.learner.alive else "learner stopped",
            "learning": service.learner.current_document,
        }

    @app.get("/v1/models", dependencies=[reads])
    def models() -> dict[str, Any]:
        data = [
            {
                "id": name,
                "object": "model",
                "created": _timestamp(version.created),
                "owned_by": "seal-lm",
                "version": version.id,
            }
            for name, version in service.model_ids()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", dependencies=[reads])
    def chat_completions(request: ChatCompletionRequest):
        version = service.resolve(request.model)
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        max_tokens = request.max_completion_tokens or request.max_tokens
        stream = service.complete(version, service.chat_prompt(messages), _sampling(service, request, max_tokens))
        return _respond(stream, version, request, "chat.completion")

    @app.post("/v1/completions", dependencies=[reads])
    def completions(request: CompletionRequest):
        version = service.resolve(request.model)
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if len(prompts) != 1:
            raise ServiceError(400, "Send one prompt per request (a list of several is not supported).", "prompt")
        stream = service.complete(version, prompts[0], _sampling(service, request, request.max_tokens))
        return _respond(stream, version, request, "text_completion")

    @app.post("/v1/documents", status_code=202, dependencies=[writes])
    def add_document(request: DocumentRequest) -> dict[str, Any]:
        document = service.submit(request.title, request.text, [q.model_dump() for q in request.questions])
        return service.document(document.id)

    @app.get("/v1/documents", dependencies=[reads])
    def list_documents() -> dict[str, Any]:
        return {"object": "list", "data": [service.document(d.id) for d in service.documents.all()]}

    @app.get("/v1/documents/{document_id}", dependencies=[reads])
    def get_document(document_id: str) -> dict[str, Any]:
        return service.document(document_id)

    @app.get("/v1/versions", dependencies=[reads])
    def list_versions() -> dict[str, Any]:
        return service.version_list()

    @app.get("/v1/versions/{version}", dependencies=[reads])
    def get_version(version: int) -> dict[str, Any]:
        return service.version(version)

    @app.post("/v1/versions/{version}/rollback", dependencies=[writes])
    def rollback(version: int) -> dict[str, Any]:
        return service.rollback(version)

    return app


def _sampling(service: Service, request: _Sampling, max_tokens: int | None):
    return service.sampling(max_tokens, request.temperature, request.top_p, request.stops(), request.seed)


def _respond(stream: CompletionStream, version: int, request: _Sampling, kind: str):
    """The whole completion as JSON, or its pieces as server-sent events."""
    name, headers = model_id(version), {VERSION_HEADER: str(version)}
    prefix, created = ("chatcmpl" if kind == "chat.completion" else "cmpl"), int(time.time())
    base = {"id": f"{prefix}-{uuid.uuid4().hex}", "created": created, "model": name}
    if not request.stream:
        result = stream.complete()
        choice = (
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
            }
            if kind == "chat.completion"
            else {"index": 0, "text": result.text, "logprobs": None, "finish_reason": result.finish_reason}
        )
        return JSONResponse(base | {"object": kind, "choices": [choice], "usage": _usage(stream)}, headers=headers)
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return StreamingResponse(
        _events(stream, base, kind, include_usage), media_type="text/event-stream", headers=headers
    )


def _events(stream: CompletionStream, base: dict[str, Any], kind: str, include_usage: bool) -> Iterator[str]:
    chunk = base | {"object": "chat.completion.chunk" if kind == "chat.completion" else "text_completion"}

    def event(delta: dict[str, Any] | str | None, finish_reason: str | None = None) -> str:
        if kind == "chat.completion":
            choice = {"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish_reason}
        return _sse(chunk | {"choices": [choice]})

    try:
        if kind == "chat.completion":
            yield event({"role": "assistant", "content": ""})
        for piece in stream:
            yield event({"content": piece} if kind == "chat.completion" else piece)
        yield event(None, stream.result.finish_reason)
        if include_usage:
            yield _sse(chunk | {"choices": [], "usage": _usage(stream)})
    except Exception as err:  # the status line is sent already: the error travels as an event
        yield _sse(_error_body(500, f"generation failed: {err}"))
    yield "data: [DONE]\n\n"


def _usage(stream: CompletionStream) -> dict[str, int]:
    result = stream.result
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _timestamp(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp())


# -- access ---------------------------------------------------------------------------------------


def _reads_guard(access: Access):
    def check(request: Request) -> None:
        if access.api_key and not access.open_reads:
            _check_key(request, access.api_key)

    return check


def _writes_guard(access: Access):
    def check(request: Request) -> None:
        if access.api_key:
            _check_key(request, access.api_key)
        elif not access.open_writes:
            raise ServiceError(
                403,
                "Writes are disabled: this server has no API key. Restart it with SEAL_API_KEY set "
                "(or, listening on loopback only, with --allow-unauthenticated-writes).",
                code="writes_disabled",
            )

    return check


def _check_key(request: Request, api_key: str) -> None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ServiceError(
            401,
            "Missing API key: send 'Authorization: Bearer <key>' (the server's SEAL_API_KEY).",
            code="missing_api_key",
        )
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise ServiceError(401, "Incorrect API key.", code="invalid_api_key")


# -- errors ---------------------------------------------------------------------------------------

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param, "code": code}
    }


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    def service_error(request: Request, err: ServiceError) -> JSONResponse:
        return JSONResponse(_error_body(err.status, err.message, err.param, err.code), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
        if first.get("type") == "json_invalid":
            return JSONResponse(
                _error_body(400, f"The body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}."),
                status_code=400,
            )
        field = ".".join(str(part) for part in first["loc"] if part != "body") or None
        message = f"{field}: {first['msg']}" if field else first["msg"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return JSONResponse(_error_body(422, f"Invalid request: {message}{more}.", field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_error_body(err.status_code, str(err.detail)), status_code=err.status_code)


class _BodyLimit:
    """Refuses a request body over ``max_bytes`` (413) before the app reads it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._too_large(send)
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)

    async def _too_large(self, send) -> None:
        response = JSONResponse(
            _error_body(413, f"The request body is over this server's limit of {self.max_bytes} bytes."),
            status_code=413,
        )
        await response({"type": "http"}, None, send)


def _replay(messages: list[dict], then=None):
    """An ASGI ``receive`` that returns ``messages`` first, then defers to ``then`` (e.g. to see a disconnect)."""

    async def receive():
        if messages:
            return messages.pop(0)
        return await then() if then is not None else {"type": "http.disconnect"}

    return receive
