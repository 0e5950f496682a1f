"""The serving endpoint's two checks (roles/vllm_serve/tasks/report.yml, after a launch and on every run that
changed nothing): a real completion with the API key must answer 200 (retried: the first request after a start
can be slow on a loaded host) and the same request without the key must be refused with 401. Both in one module
run (gb10.cluster.api_check) instead of two. Plain Python, no Ansible import: the module hands in the function
that sends a request (Ansible's open_url there, a test's own here); the key is never part of a result or a message."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: its status (0 when there was none) and body, or why there was none."""

    status: int
    body: str = ""
    error: str = ""


# (url, JSON payload, key or '' for none, timeout in seconds, CA bundle or '') -> the answer.
Sender = Callable[[str, dict[str, Any], str, float, str], Answer]


def _describe(answer: Answer) -> str:
    return f"HTTP {answer.status}" if answer.status else f"no HTTP answer ({answer.error})"


def check(endpoint: str, model: str, key: str, prompt: str, max_tokens: int, *, sender: Sender, timeout: float = 120.0,
          refused_timeout: float = 60.0, retries: int = 3, delay: float = 10.0, ca_path: str = "",
          sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Both checks against ``endpoint`` (.../v1). Returns the completion's text, the statuses, the attempts the
    keyed request took (1 + up to ``retries``) and ``errors``: one sentence per failed check (empty: both passed)."""
    url = endpoint.rstrip("/") + "/completions"
    keyed = Answer(0, "", "not sent")
    attempts = 0
    for attempts in range(1, max(0, retries) + 2):
        keyed = sender(url, {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}, key, timeout, ca_path)
        if keyed.status == 200 or attempts > retries:
            break
        sleep(delay)
    errors = []
    text = ""
    if keyed.status == 200:
        try:
            text = str(json.loads(keyed.body)["choices"][0]["text"])
        except (ValueError, KeyError, IndexError, TypeError):
            errors.append(f"The completion with the API key at {url} answered 200 without a completion in it "
                          f"({keyed.body[:200]!r}); read the head's vLLM log (docker logs gb10-vllm).")
    else:
        errors.append(f"The completion with the API key at {url} answered {_describe(keyed)} after {attempts} attempt(s), "
                      "not 200; read the head's vLLM log (docker logs gb10-vllm) and the API proxy's (nginx) log.")
    refused = sender(url, {"model": model, "prompt": prompt, "max_tokens": 1}, "", refused_timeout, ca_path)
    if refused.status != 401:
        errors.append(f"The same request without the key at {url} answered {_describe(refused)}, not 401: the API proxy "
                      "must refuse it; check nginx on the head (roles/vllm_serve, tasks/proxy.yml) and run serve.yml again.")
    return {"completion": text, "status": keyed.status, "attempts": attempts, "unauthenticated_status": refused.status,
            "errors": errors}
