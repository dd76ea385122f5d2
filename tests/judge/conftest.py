"""A loopback server speaking the OpenAI chat-completions protocol, serving canned judge replies."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "judge"


class FakeOpenAI:
    """State of the fake server: the replies it gives and every request it got.

    ``reply(body) -> str`` makes the assistant text from the request body; ``fail`` is a queue of
    faults to answer with before answering normally: an HTTP status (e.g. 429, 500), or one of
    ``"retry-after"`` (429 with ``Retry-After: 1``), ``"truncated"`` (a 200 whose JSON body is cut
    in half), ``"no-choices"`` (a 200 with ``choices: []``), ``"hang"`` (no answer for ``hang_s``).
    """

    def __init__(self) -> None:
        self.reply: Callable[[dict[str, Any]], str] = lambda body: "8 7\nfine"
        self.fail: list[int] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.url = ""
        self.hang_s = 3.0
        self.times: list[float] = []

    @property
    def n(self) -> int:
        return len(self.requests)

    def user_messages(self) -> list[str]:
        return [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in self.requests]


def _handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict[str, Any], *, retry_after: str | None = None,
                  cut: bool = False) -> None:
            blob = json.dumps(payload).encode()
            if cut:
                blob = blob[: len(blob) // 2]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(blob)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            else:
                self.send_header("retry-after-ms", "5")  # keeps the client's backoff short in tests
            self.end_headers()
            self.wfile.write(blob)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            with state.lock:
                state.requests.append(body)
                state.headers.append(dict(self.headers))
                state.times.append(time.monotonic())
                fault = state.fail.pop(0) if state.fail else 200
            if fault == "hang":
                time.sleep(state.hang_s)
                return  # the client has given up; nothing is sent
            if fault == "retry-after":
                self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}}, retry_after="1")
                return
            if isinstance(fault, int) and fault != 200:
                self._send(fault, {"error": {"message": f"canned {fault}", "type": "server_error"}})
                return
            text = state.reply(body)
            prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
            completion_tokens = len(text.split())
            choices = [] if fault == "no-choices" else [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]
            self._send(200, {
                "id": f"chatcmpl-{state.n}", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            }, cut=fault == "truncated")

    return Handler


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch):
    """A running fake server on 127.0.0.1 (free port); yields its FakeOpenAI state."""
    state = FakeOpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    for name in ("KICK_JUDGE_API_KEY", "OPENAI_API_KEY", "KICK_JUDGE_BASE_URL", "KICK_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KICK_JUDGE_API_KEY", "sk-test-secret-key")
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
