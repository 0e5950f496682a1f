#!/usr/bin/python
"""Ansible module: the serving endpoint answers a completion with the API key and refuses it without."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: api_check
short_description: A real completion with the API key, and the same request refused without it, in one run
description:
  - POSTs a completion request for O(model) to O(endpoint)C(/completions) with the key as a Bearer token in the
    C(Authorization) header and expects HTTP 200 with a completion (retried O(retries) times, O(delay) seconds
    apart, since the first request after a start can be slow), then the same request without the key and
    expects HTTP 401.
  - Fails with one sentence per check that did not pass. The key is never returned or shown.
  - Changes nothing; runs in check mode too.
options:
  endpoint:
    description: The OpenAI-compatible base URL (http(s)://host:port/v1).
    type: str
    required: true
  model:
    description: The served model name.
    type: str
    required: true
  api_key:
    description: The API key (vllm_serve_api_key).
    type: str
    required: true
  prompt:
    description: The prompt of the test completion.
    type: str
    default: Hello
  max_tokens:
    description: Tokens the test completion generates.
    type: int
    default: 8
  timeout:
    description: Seconds the request with the key may take.
    type: float
    default: 120
  refused_timeout:
    description: Seconds the request without the key may take.
    type: float
    default: 60
  retries:
    description: Further attempts of the request with the key when it does not answer 200.
    type: int
    default: 3
  delay:
    description: Seconds between those attempts.
    type: float
    default: 10
  ca_path:
    description: CA bundle to verify an https endpoint with (empty, the system's).
    type: str
    default: ""
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: A real completion with the API key, and the same request refused without it
  gb10.cluster.api_check:
    endpoint: http://10.77.0.11:8000/v1
    model: qwen3.5-397b-a17b-fp8
    api_key: "{{ vllm_serve_api_key }}"
  register: vllm_serve_api_answers
  no_log: true
  failed_when: false

- name: Both answered as they must (the message without the key)
  ansible.builtin.assert:
    that: vllm_serve_api_answers.errors | length == 0
    fail_msg: "{{ vllm_serve_api_answers.errors | join(' ') }}"
"""

RETURN = r"""
completion:
  description: The text of the completion with the key.
  returned: always
  type: str
status:
  description: The HTTP status of the request with the key (0, no answer).
  returned: always
  type: int
attempts:
  description: How many times the request with the key was sent.
  returned: always
  type: int
unauthenticated_status:
  description: The HTTP status of the request without the key (0, no answer).
  returned: always
  type: int
errors:
  description: One sentence per check that did not pass (the module fails when there is any).
  returned: always
  type: list
  elements: str
"""

import json
import urllib.error
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.gb10.cluster.plugins.module_utils.api_check import Answer, check


def _send(url: str, payload: dict[str, Any], key: str, timeout: float, ca_path: str) -> Answer:
    """POST ``payload`` as JSON, with the key as a Bearer token when given (Ansible's open_url)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        response = open_url(url, data=json.dumps(payload), headers=headers, method="POST", timeout=timeout,
                            ca_path=ca_path or None)
        return Answer(int(response.getcode()), response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return Answer(int(exc.code), exc.read().decode("utf-8", "replace") if exc.fp else "")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Answer(0, "", str(getattr(exc, "reason", exc)))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "endpoint": {"type": "str", "required": True},
            "model": {"type": "str", "required": True},
            "api_key": {"type": "str", "required": True, "no_log": True},
            "prompt": {"type": "str", "default": "Hello"},
            "max_tokens": {"type": "int", "default": 8},
            "timeout": {"type": "float", "default": 120},
            "refused_timeout": {"type": "float", "default": 60},
            "retries": {"type": "int", "default": 3},
            "delay": {"type": "float", "default": 10},
            "ca_path": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    result = check(p["endpoint"], p["model"], p["api_key"], p["prompt"], p["max_tokens"], sender=_send, timeout=p["timeout"],
                   refused_timeout=p["refused_timeout"], retries=p["retries"], delay=p["delay"], ca_path=p["ca_path"])
    if result["errors"]:
        module.fail_json(msg=" ".join(result["errors"]), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
