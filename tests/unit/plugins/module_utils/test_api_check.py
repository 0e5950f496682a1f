"""module_utils/api_check.py with the module's sender (gb10.cluster.api_check, Ansible's open_url): the completion
with the key and the refusal without it, against a real local HTTP server standing in for the API proxy."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.api_check import Answer, check
from ansible_collections.gb10.cluster.plugins.modules.api_check import _send

KEY = "k3y-for-the-test_0123456789"


class _Proxy(BaseHTTPRequestHandler):
    """The API proxy as the lab runs it: 401 without the key; with it, the completion (after `slow` 503s)."""

    slow = 0
    open_door = False
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        auth = self.headers.get("Authorization", "")
        type(self).seen.append({"path": self.path, "auth": auth, "body": body})
        if auth != f"Bearer {KEY}" and not type(self).open_door:
            status, out = 401, {"error": "no key"}
        elif type(self).slow > 0:
            type(self).slow -= 1
            status, out = 503, {"error": "warming up"}
        else:
            status, out = 200, {"choices": [{"text": " hello back"}]}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    _Proxy.slow, _Proxy.open_door, _Proxy.seen = 0, False, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_both_checks_pass(endpoint):
    got = check(endpoint, "tiny-qwen3", KEY, "Hello", 8, sender=_send, sleep=lambda s: None)
    assert got == {"completion": " hello back", "status": 200, "attempts": 1, "unauthenticated_status": 401, "errors": []}
    assert [s["path"] for s in _Proxy.seen] == ["/v1/completions", "/v1/completions"]
    assert _Proxy.seen[0]["auth"] == f"Bearer {KEY}" and _Proxy.seen[1]["auth"] == ""
    assert _Proxy.seen[0]["body"] == {"model": "tiny-qwen3", "prompt": "Hello", "max_tokens": 8, "temperature": 0}
    assert _Proxy.seen[1]["body"] == {"model": "tiny-qwen3", "prompt": "Hello", "max_tokens": 1}


def test_a_slow_first_answer_is_retried(endpoint):
    _Proxy.slow = 2
    waits: list[float] = []
    got = check(endpoint, "m", KEY, "Hello", 4, sender=_send, retries=3, delay=10, sleep=waits.append)
    assert got["status"] == 200 and got["attempts"] == 3 and waits == [10, 10] and got["errors"] == []


def test_no_200_after_the_retries_fails_and_the_refusal_is_still_checked(endpoint):
    _Proxy.slow = 10
    got = check(endpoint, "m", KEY, "Hello", 4, sender=_send, retries=3, delay=1, sleep=lambda s: None)
    assert got["attempts"] == 4 and got["status"] == 503 and got["unauthenticated_status"] == 401
    assert len(got["errors"]) == 1 and "answered HTTP 503 after 4 attempt(s), not 200" in got["errors"][0]
    assert KEY not in " ".join(got["errors"])


def test_a_proxy_that_lets_a_request_without_the_key_through_fails(endpoint):
    _Proxy.open_door = True
    got = check(endpoint, "m", KEY, "Hello", 4, sender=_send, sleep=lambda s: None)
    assert got["status"] == 200 and got["unauthenticated_status"] == 200
    assert len(got["errors"]) == 1 and "without the key" in got["errors"][0] and "not 401" in got["errors"][0]


def test_no_answer_at_all_names_the_reason():
    def sender(url, payload, key, timeout, ca_path):
        return Answer(0, "", "Connection refused")

    got = check("http://10.0.0.1:8000/v1/", "m", KEY, "Hello", 4, retries=1, sender=sender, sleep=lambda s: None)
    assert got["attempts"] == 2 and got["status"] == 0 and got["unauthenticated_status"] == 0
    assert "no HTTP answer (Connection refused)" in got["errors"][0] and "http://10.0.0.1:8000/v1/completions" in got["errors"][0]
    assert len(got["errors"]) == 2


def test_a_200_without_a_completion_is_an_error():
    def sender(url, payload, key, timeout, ca_path):
        return Answer(200, "{}") if key else Answer(401, "")

    got = check("http://h:1/v1", "m", KEY, "Hello", 4, sender=sender, sleep=lambda s: None)
    assert got["completion"] == "" and "without a completion" in got["errors"][0]


def test_nothing_listening_is_no_http_answer():
    got = _send("http://127.0.0.1:9/v1/completions", {"model": "m"}, KEY, 5, "")
    assert got.status == 0 and got.error
