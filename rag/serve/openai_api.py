"""The OpenAI-compatible door: `GET /v1/models` and `POST /v1/chat/completions` (plain and streamed), so any
client of the OpenAI API can ask rag, and gets verified quotes instead of generated text.

The reply's `content` is the answer as Markdown, the same text as `rag ask --format markdown`. The answer object of
`rag ask --json` (every citation with its file, offsets, page or section) travels beside it in the message's `rag`
field (in a stream: the last chunk's delta), for clients that know rag. Earlier user messages are the conversation a
follow-up is searched with, as in the chat. Parameters that mean nothing for quoting (temperature, tools, …) are
accepted and ignored. Models: `rag` (every collection the caller may read) and `rag:NAME` (one collection).
"""

import json
import secrets
import time

from rag.errors import RagError
from rag.serve.export import answer_markdown
from rag.serve.library import Answerer

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
OWNER = "rag"


class BadRequest(Exception):
    """A request the endpoint refuses, with the HTTP status and the OpenAI error code to answer with."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def error_body(message: str, code: str = "invalid_request", param: str | None = None, kind: str = "") -> dict:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind or "invalid_request_error", "param": param, "code": code}}


def models(answerer: Answerer, user: str | None) -> list[str]:
    """The model names the caller may ask: `rag`, and `rag:NAME` for each collection they may read."""
    return ["rag"] + [f"rag:{name}" for name in answerer.access.readable(user) if name]


def question_and_history(body) -> tuple[str, list[str], str, bool]:
    """The question (the last user message), the earlier user messages, the model and whether to stream, from a
    chat completion request; BadRequest saying what is wrong otherwise."""
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object with `model` and `messages`", "invalid_body")
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise BadRequest(400, "`model` is missing: name one of GET /v1/models (e.g. `rag`)", "missing_model", "model")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "`messages` must be a non-empty list of {role, content}", "invalid_messages", "messages")
    asked = []
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            role = message.get("role") if isinstance(message, dict) else None
            raise BadRequest(
                400,
                f"messages[{n}] has role {role!r}; use one of {', '.join(sorted(ROLES))}",
                "invalid_role",
                "messages",
            )
        if message["role"] == "user":
            asked.append(_text(message.get("content"), n))
    if messages[-1].get("role") != "user" or not asked:
        raise BadRequest(400, "the last message must be the user's question", "invalid_messages", "messages")
    return asked[-1], asked[:-1], model, bool(body.get("stream"))


def _text(content, n: int) -> str:
    """The text of one message: a string, or a list of text parts (other kinds are refused by name)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for m, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text" or not isinstance(part.get("text"), str):
                raise BadRequest(
                    400, f"messages[{n}].content[{m}] is a {kind!r} part; rag answers text alone", "unsupported_content"
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise BadRequest(400, f"messages[{n}].content must be a string or a list of text parts", "invalid_content")


def complete(answerer: Answerer, user: str | None, body) -> tuple[str, dict, str]:
    """The answer to a chat completion request: its Markdown, the `rag ask --json` object, and the model named."""
    question, history, model, _ = question_and_history(body)
    known = models(answerer, user)
    if model not in known:
        raise BadRequest(
            404,
            f"the model {model!r} does not exist or is not yours; GET /v1/models lists {', '.join(known)}",
            "model_not_found",
            "model",
        )
    limit = answerer.backend.settings.max_question_chars
    if len(question) > limit:
        raise BadRequest(
            400,
            f"the question is {len(question):,} characters long; questions may be at most {limit:,} characters "
            "(RAG_MAX_QUESTION_CHARS)",
            "question_too_long",
            "messages",
        )
    collections = [model.split(":", 1)[1]] if ":" in model else None
    try:
        result = answerer.ask(user, question, history, collections).to_dict()
    except RagError as error:
        raise BadRequest(503, f"rag could not answer: {error}", "unavailable") from None
    return answer_markdown(result), result, model


def completion(markdown: str, result: dict, model: str) -> dict:
    """The non-streamed reply."""
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": markdown, "rag": result}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def chunks(markdown: str, result: dict, model: str):
    """The streamed reply as server-sent events: the role, the Markdown line by line, the answer object with the
    finish, then `[DONE]`; the deltas' contents join to the non-streamed content exactly."""
    name, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

    def event(delta: dict, finish: str | None = None) -> str:
        chunk = {
            "id": name,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    for line in markdown.splitlines(keepends=True):
        yield event({"content": line})
    yield event({"rag": result}, "stop")
    yield "data: [DONE]\n\n"


def add_routes(app, answerer: Answerer) -> None:
    """`/v1/models` and `/v1/chat/completions` on the server's app (its guards and log-in in front)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    @app.get("/v1/models")
    async def list_models(request: Request):
        user = request.scope.get("rag_user")
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": OWNER} for m in models(answerer, user)],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = json.loads(await request.body())
        except ValueError as error:
            return JSONResponse(error_body(f"the body is not JSON ({error})", "invalid_json"), status_code=400)
        user = request.scope.get("rag_user")
        try:
            stream = question_and_history(body)[3]
            markdown, result, model = await run_in_threadpool(complete, answerer, user, body)
        except BadRequest as error:
            return JSONResponse(error_body(str(error), error.code, error.param), status_code=error.status)
        if stream:
            return StreamingResponse(chunks(markdown, result, model), media_type="text/event-stream")
        return completion(markdown, result, model)
