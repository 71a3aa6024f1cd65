"""A real local HTTP server speaking the OpenAI chat-completions wire format, scripted by the test.

Tests (and other helpers' graph tests) talk to it through the real client path
(ChatOpenAI -> openai -> httpx -> HTTP). It answers POST /v1/chat/completions from a list of
scripted replies, in order, and GET /v1/models; it records every request body. Like a strict
server (OpenAI, vLLM) it refuses with HTTP 400 a conversation in which an assistant message's
tool calls are not each answered by a tool message, or carry arguments that are not JSON.

    with ScriptedOpenAIServer([call("set_query", {...}), say("done")]) as server:
        settings = server.settings(openai_timeout_s=5)
        ...
        assert "tools" in server.requests[0]
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from geodelta.settings import Settings


@dataclass(frozen=True)
class Reply:
    """One scripted answer: text and/or tool calls, an HTTP error status, or a hang."""

    content: str | None = None
    tool_calls: tuple[tuple[str, str], ...] = ()  # (name, arguments sent verbatim: may be malformed JSON)
    status: int = 200
    error: str = ""
    hang: bool = False


def say(content: str) -> Reply:
    """A plain text reply (finish_reason "stop")."""
    return Reply(content=content)


def call(name: str, args: dict[str, Any] | str, content: str | None = None) -> Reply:
    """One tool call; a dict is JSON-encoded, a str is sent verbatim (use it for malformed JSON)."""
    return calls([(name, args)], content=content)


def calls(items: Iterable[tuple[str, dict[str, Any] | str]], content: str | None = None) -> Reply:
    """Several tool calls in one reply."""
    return Reply(content=content, tool_calls=tuple((n, a if isinstance(a, str) else json.dumps(a)) for n, a in items))


def fail(status: int, message: str = "scripted failure") -> Reply:
    """An HTTP error with an OpenAI-style {"error": {...}} body."""
    return Reply(status=status, error=message)


HANG = Reply(hang=True)  # sleeps past any sensible client timeout (until the server stops)


def unused_port_url() -> str:
    """A base URL where nothing listens (a port bound, read, and released): the "server down" case."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _conversation_problem(messages: list[dict[str, Any]]) -> str | None:
    """Why a strict server would refuse this message list (None when it is fine)."""
    for i, m in enumerate(messages):
        if m.get("role") != "assistant" or not m.get("tool_calls"):
            continue
        for tc in m["tool_calls"]:
            if not tc.get("id"):
                return f"messages[{i}]: a tool call has no id"
            try:
                json.loads(tc["function"]["arguments"])
            except (KeyError, TypeError, ValueError):
                return f"messages[{i}]: tool call {tc.get('id')} has arguments that are not valid JSON"
        wanted = {tc["id"] for tc in m["tool_calls"]}
        answered = set()
        for follow in messages[i + 1 :]:
            if follow.get("role") != "tool":
                break
            answered.add(follow.get("tool_call_id"))
        if wanted - answered:
            return (
                f"messages[{i}]: an assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'; missing: {sorted(wanted - answered)}"
            )
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path.rstrip("/") == "/v1/models":
            now = int(time.time())
            data = [{"id": owner.model, "object": "model", "created": now, "owned_by": "geodelta-tests"}]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._error(404, f"no route GET {self.path}", "not_found_error")

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route POST {self.path}", "not_found_error")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "request body is not JSON")
            return
        with owner.lock:
            owner.requests.append(body)
            index = len(owner.requests) - 1
        if body.get("model") != owner.model:  # what Ollama says for a model it does not have
            self._error(404, f'model "{body.get("model")}" not found, try pulling it first', "not_found_error")
            return
        problem = _conversation_problem(body.get("messages") or [])
        if problem:
            self._error(400, problem)
            return
        reply = owner.next_reply()
        if reply is None:
            self._error(500, f"scripted server: no reply left for request {index}", "server_error")
            return
        if reply.hang:
            owner.stopping.wait(owner.hang_s)
            self._error(504, "scripted hang ended", "server_error")
            return
        if reply.status != 200:
            self._error(reply.status, reply.error, "server_error" if reply.status >= 500 else "invalid_request_error")
            return
        if body.get("stream"):
            self._stream(reply, index)
        else:
            self._send_json(200, owner.completion(reply, index))

    def _stream(self, reply: Reply, index: int) -> None:
        """Server-sent events: one delta with everything, one with finish_reason, then [DONE]."""
        owner = self.server.owner
        full = owner.completion(reply, index)
        msg, finish = full["choices"][0]["message"], full["choices"][0]["finish_reason"]
        delta: dict[str, Any] = {"role": "assistant", "content": msg["content"]}
        if "tool_calls" in msg:
            delta["tool_calls"] = [{"index": k, **tc} for k, tc in enumerate(msg["tool_calls"])]
        base = {"id": full["id"], "object": "chat.completion.chunk", "created": full["created"], "model": full["model"]}
        events = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        ]
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for ev in events:
                self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedOpenAIServer


@dataclass
class ScriptedOpenAIServer:
    """The server: a context manager; `url` is the base URL (…/v1), `requests` the bodies received."""

    replies: list[Reply]
    model: str = "geodelta-test"
    hang_s: float = 30.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._script = list(self.replies)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def next_reply(self) -> Reply | None:
        with self.lock:
            return self._script.pop(0) if self._script else None

    def completion(self, reply: Reply, index: int) -> dict[str, Any]:
        """The exact chat.completion object for a scripted reply."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{index}_{k}", "type": "function", "function": {"name": n, "arguments": a}}
                for k, (n, a) in enumerate(reply.tool_calls)
            ]
        prompt_tokens = len(json.dumps(self.requests[index])) // 4
        completion_tokens = max(1, len(json.dumps(message)) // 4)
        return {
            "id": f"chatcmpl-geodelta{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first (use it as a context manager)"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def settings(self, **overrides: Any) -> Settings:
        """Settings pointing the openai backend here; no retries and a short timeout unless overridden."""
        values: dict[str, Any] = {
            "backend": "openai",
            "openai_base_url": self.url,
            "openai_model": self.model,
            "openai_max_retries": 0,
            "openai_timeout_s": 10.0,
        }
        values.update(overrides)
        return Settings(**values)

    def start(self) -> ScriptedOpenAIServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # ends scripted hangs
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
