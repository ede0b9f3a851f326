"""The doors other tools use: the OpenAI-compatible endpoint (asked with the official `openai` package) and MCP
(the official `mcp` SDK's client over stdio and over HTTP), every quote verified as in the chat."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
import pytest
from conftest import copy_index, start_server

from rag.ingest.corpus import read_source
from rag.serve import accounts
from rag.serve.export import answer_markdown

QUESTION = "In how many countries will the terrorists now solve their problems?"
PASSWORD = "long enough password"


@pytest.fixture(scope="module")
def served(seed_settings, tmp_path_factory):
    """`rag serve` on loopback without accounts: no key is needed, as for the chat."""
    settings = copy_index(seed_settings, tmp_path_factory.mktemp("doors"))
    process, url = start_server(settings)
    yield settings, url
    process.terminate()
    process.wait(timeout=30)


def assert_quotes_stand(settings, citations):
    assert citations
    for c in citations:
        assert read_source(settings.corpus, c["source"])[c["start"] : c["end"]] == c["quote"]


def openai_client(url: str, key: str = "unused"):
    from openai import OpenAI

    return OpenAI(base_url=url + "v1", api_key=key, max_retries=0, timeout=120)


def test_the_openai_client_gets_the_markdown_answer_and_its_verified_citations(served):
    settings, url = served
    client = openai_client(url)
    assert [m.id for m in client.models.list().data] == ["rag"]
    reply = client.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": QUESTION}], temperature=0.3
    )
    message = reply.choices[0].message
    answer = message.model_extra["rag"]
    assert message.content == answer_markdown(answer)  # the same text as `rag ask --format markdown`
    assert "**" in message.content and "[^1]:" in message.content and "60" in message.content
    assert_quotes_stand(settings, answer["citations"])
    assert reply.choices[0].finish_reason == "stop"


def test_streamed_text_equals_the_text_given_whole(served):
    settings, url = served
    client = openai_client(url)
    messages = [{"role": "user", "content": QUESTION}]
    whole = client.chat.completions.create(model="rag", messages=messages).choices[0].message
    parts, extra = [], None
    for chunk in client.chat.completions.create(model="rag", messages=messages, stream=True):
        delta = chunk.choices[0].delta
        parts.append(delta.content or "")
        extra = (delta.model_extra or {}).get("rag", extra)
    assert "".join(parts) == whole.content and len(parts) > 3
    assert extra["citations"] == whole.model_extra["rag"]["citations"]


def test_a_follow_up_is_searched_with_the_conversation_as_in_the_chat(served):
    settings, url = served
    client = openai_client(url)
    messages = [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "When did the Russian military operation in Syria start?"},
        {"role": "assistant", "content": "…"},
        {"role": "user", "content": [{"type": "text", "text": "What were its two main tasks?"}]},
    ]
    answer = client.chat.completions.create(model="rag", messages=messages).choices[0].message.model_extra["rag"]
    assert answer["searched_for"].startswith("When did the Russian military operation in Syria start?")


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "invalid_json"),
        (json.dumps({"model": "rag", "messages": []}), 400, "invalid_messages"),
        (json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}), 404, "model_not_found"),
        (json.dumps({"model": "rag", "messages": [{"role": "wizard", "content": QUESTION}]}), 400, "invalid_role"),
        (json.dumps({"model": "rag", "messages": [{"role": "assistant", "content": "hi"}]}), 400, "invalid_messages"),
        (
            json.dumps(
                {"model": "rag", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}
            ),
            400,
            "unsupported_content",
        ),
        (
            json.dumps({"model": "rag", "messages": [{"role": "user", "content": "x" * 100_000}]}),
            400,
            "question_too_long",
        ),
        (json.dumps({"messages": [{"role": "user", "content": QUESTION}]}), 400, "missing_model"),
    ],
)
def test_bad_requests_get_an_openai_error_object_and_the_server_keeps_answering(served, body, status, code):
    settings, url = served
    reply = httpx.post(
        url + "v1/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=60
    )
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error"
    good = openai_client(url).chat.completions.create(model="rag", messages=[{"role": "user", "content": QUESTION}])
    assert good.choices[0].message.model_extra["rag"]["citations"]


def call_tools(server) -> dict:
    """List the tools of an MCP server and call each; the results as plain objects."""
    from mcp import Client

    async def run():
        async with Client(server) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            asked = await client.call_tool("ask", {"question": QUESTION})
            found = await client.call_tool("search", {"query": "descale the kettle", "k": 3})
            first = found.structured_content["passages"][0]["id"]
            passage = await client.call_tool("get_passage", {"id": first})
            missing = await client.call_tool("get_passage", {"id": "nowhere.txt#9"})
            return {
                "tools": tools,
                "ask": asked.structured_content,
                "search": found.structured_content,
                "passage": passage.structured_content,
                "missing": missing,
            }

    return asyncio.run(run())


def check_tools(settings, found: dict) -> None:
    assert set(found["tools"]) == {"ask", "search", "get_passage"}
    assert all("verified" in found["tools"][name].description for name in found["tools"])
    assert_quotes_stand(settings, found["ask"]["citations"])
    assert "60" in found["ask"]["text"] and found["ask"]["abstained"] is False
    passages = found["search"]["passages"]
    assert passages and "kettle" in passages[0]["text"].lower()
    for p in [*passages, found["passage"]]:
        assert read_source(settings.corpus, p["source"])[p["start"] : p["end"]] == p["text"]
    assert found["passage"]["id"] == passages[0]["id"] and "context_after" in found["passage"]
    assert found["missing"].is_error and "no passage" in found["missing"].content[0].text


def test_mcp_over_http_lists_and_calls_every_tool(served):
    settings, url = served
    check_tools(settings, call_tools(url + "mcp"))


def test_mcp_over_stdio_lists_and_calls_every_tool(seed_settings):
    from mcp import StdioServerParameters

    env = {**os.environ, "RAG_CORPUS": str(seed_settings.corpus), "RAG_INDEX": str(seed_settings.index)}
    check_tools(
        seed_settings, call_tools(StdioServerParameters(command=sys.executable, args=["-m", "rag", "mcp"], env=env))
    )


@pytest.fixture(scope="module")
def keyed(seed_settings, tmp_path_factory):
    """A server with accounts: the doors need an API key."""
    settings = copy_index(seed_settings, tmp_path_factory.mktemp("keyed"))
    accounts.add_user(settings.index / accounts.FILE, "ann", "reader", [], [], PASSWORD)
    key = accounts.make_key(settings.index / accounts.FILE, "ann")
    process, url = start_server(settings)
    yield settings, url, key
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.parametrize("key", [None, "rag_0000_wrong", "not-a-rag-key"])
def test_the_doors_of_a_server_with_accounts_need_a_key(keyed, key):
    settings, url, _ = keyed
    headers = {"authorization": f"Bearer {key}"} if key else {}
    for path in ("v1/models", "mcp"):
        reply = (
            httpx.post(url + path, headers=headers, json={}, timeout=30)
            if path == "mcp"
            else httpx.get(url + path, headers=headers, timeout=30)
        )
        assert reply.status_code == 401, path
    error = httpx.get(url + "v1/models", headers=headers, timeout=30).json()["error"]
    assert error["code"] == "invalid_api_key" and "rag user key" in error["message"]


def test_with_its_key_a_user_is_answered_through_both_doors(keyed):
    settings, url, key = keyed
    reply = openai_client(url, key).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": QUESTION}]
    )
    assert_quotes_stand(settings, reply.choices[0].message.model_extra["rag"]["citations"])
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        from mcp import Client

        async with httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=120) as http:
            async with Client(streamable_http_client(url + "mcp", http_client=http)) as client:
                return (await client.call_tool("ask", {"question": QUESTION})).structured_content

    assert_quotes_stand(settings, asyncio.run(run())["citations"])
