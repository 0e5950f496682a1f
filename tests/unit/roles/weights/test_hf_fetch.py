"""The Hugging Face download (roles/weights/files/gb10_hf_fetch.py) against the lab's Hub-like endpoint (lab/hub.py).

The endpoint is the one molecule/faults/hf-download.yml serves to the lab nodes: it requires the token on
every Hub route, sends lfs files through a "CDN" redirect that refuses a request carrying the token, and
answers Range requests, so these tests would fail on a downloader that leaks the token across the redirect,
cannot resume, or hides why it failed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from roles.weights.files import gb10_hf_fetch as fetch  # the script the role copies to the nodes
from tests.support.hub import served_hub

TOKEN = "hf_labTestToken0123456789abcdef"
REPO = "lab-org/tiny-fetch"


@pytest.fixture
def served(tmp_path):
    """A 1 MiB repository served on loopback; yields (endpoint, info, server)."""
    with served_hub(tmp_path, REPO, TOKEN) as (port, info, server):
        yield f"http://127.0.0.1:{port}", info, server


def _token_file(tmp_path: Path, token: str = TOKEN) -> str:
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return str(path)


def _run(tmp_path: Path, endpoint: str, info: dict, token: str = TOKEN) -> tuple[int, dict]:
    """The tool as the role runs it: a separate python3, argv without the token, one JSON line out."""
    script = Path(fetch.__file__)
    proc = subprocess.run(
        [sys.executable, str(script), "download", str(tmp_path / "dest"), "--repo", REPO, "--revision",
         info["revision"], "--token-file", _token_file(tmp_path, token), "--endpoint", endpoint, "--exclude",
         "original/*", "--progress", str(tmp_path / "progress.json")],
        capture_output=True, text=True, timeout=60, check=False)
    assert token not in proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_download_verifies_excludes_and_records(tmp_path, served):
    endpoint, info, server = served
    rc, res = _run(tmp_path, endpoint, info)
    assert rc == 0 and res["complete"] and res["changed"], res
    assert res["files"] == info["files"] == 4 and res["bytes"] == info["bytes"]
    dest = tmp_path / "dest"
    repo_dir = tmp_path / "repos" / REPO
    for name in ("config.json", "tokenizer.json", "model-00001-of-00002.safetensors"):
        assert (dest / name).read_bytes() == (repo_dir / name).read_bytes()
    assert not (dest / "original").exists(), "--exclude original/* is honoured"
    # the lfs files came from the CDN without the token (the CDN refuses a request that carries it)
    assert server.stats["cdn"] == 2 and server.stats["cdn_with_authorization"] == 0
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["state"] == "done, 4/4 files," and progress["bytes"] == progress["total"] == info["bytes"]
    assert fetch.check(dest, REPO, info["revision"]) == {"complete": True, "files": 4, "bytes": info["bytes"]}
    # a second run downloads nothing
    rc, again = _run(tmp_path, endpoint, info)
    assert rc == 0 and not again["changed"] and again["received_bytes"] == 0
    # nothing the hub logged carries the token
    assert TOKEN not in (tmp_path / "hub.log").read_text()


def test_check_notices_another_revision_or_a_changed_file(tmp_path, served):
    endpoint, info, _ = served
    dest = tmp_path / "dest"
    assert not fetch.check(dest, REPO, info["revision"])["complete"]
    _run(tmp_path, endpoint, info)
    assert not fetch.check(dest, REPO, "0" * 40)["complete"]
    (dest / "config.json").write_text("{}")
    assert fetch.check(dest, REPO, info["revision"]) == {"complete": False, "reason": "config.json changed size"}


def test_wrong_token_says_401_without_the_token(tmp_path, served):
    endpoint, info, server = served
    wrong = "hf_wrongToken_abcdefghijklmnop"
    rc, res = _run(tmp_path, endpoint, info, wrong)
    assert rc == 1 and not res["complete"]
    assert res["error"].startswith(f"{endpoint} answered HTTP 401 for {REPO}: the token was refused")
    assert "gb10_hf_token" in res["error"] and wrong not in res["error"]
    assert server.stats["unauthorized"] == 1
    assert not (tmp_path / "dest" / "config.json").exists()


def test_unknown_revision_and_unreachable_endpoint(tmp_path, served):
    endpoint, info, _ = served
    rc, res = _run(tmp_path, endpoint, {**info, "revision": "1" * 40})
    assert rc == 1 and "HTTP 404" in res["error"] and "hf_revision" in res["error"]
    rc, res = _run(tmp_path, "http://127.0.0.1:9", info)
    assert rc == 1 and res["error"].startswith("cannot reach http://127.0.0.1:9 for lab-org/tiny-fetch")


def test_resume_sends_a_range_and_keeps_the_bytes(tmp_path, served):
    endpoint, info, server = served
    dest = tmp_path / "dest"
    shard = "model-00002-of-00002.safetensors"
    data = (tmp_path / "repos" / REPO / shard).read_bytes()
    part = dest / ".gb10-stage" / "hf" / f"{shard}.incomplete"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:200_000])  # a download cut short
    rc, res = _run(tmp_path, endpoint, info)
    assert rc == 0 and res["complete"]
    assert server.stats["range"] == 1
    assert res["received_bytes"] == info["bytes"] - 200_000
    assert (dest / shard).read_bytes() == data and not part.exists()


def test_corrupt_partial_is_caught_by_sha256(tmp_path, served):
    endpoint, info, _ = served
    dest = tmp_path / "dest"
    shard = "model-00001-of-00002.safetensors"
    part = dest / ".gb10-stage" / "hf" / f"{shard}.incomplete"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # not the file's first bytes
    rc, res = _run(tmp_path, endpoint, info)
    assert rc == 1 and f"{shard} of {REPO} does not match its sha256" in res["error"]
    rc, res = _run(tmp_path, endpoint, info)  # the bad partial was dropped: the next run completes
    assert rc == 0 and res["complete"]


def test_token_goes_only_to_the_endpoint_on_redirects():
    """Relative redirects (same server: a renamed repo) keep the token; a redirect to another host does not."""
    handler = fetch._Redirects()
    req = fetch.urllib.request.Request("http://hub.example/a/b/resolve/x/f")
    req.add_unredirected_header("Authorization", "Bearer t0ken-value")
    same = handler.redirect_request(req, None, 302, "Found", {"Location": "/a/c/resolve/x/f"},
                                    "http://hub.example/a/c/resolve/x/f")
    assert same.unredirected_hdrs.get("Authorization") == "Bearer t0ken-value"
    for target in ("https://cdn.example/blob?sig=1", "http://hub.example:8080/blob", "https://hub.example/blob"):
        other = handler.redirect_request(req, None, 302, "Found", {"Location": target}, target)
        assert "Authorization" not in other.unredirected_hdrs and "Authorization" not in other.headers, target


def test_scrub_removes_the_token_from_any_message():
    assert fetch.scrub(f"boom {TOKEN} boom", TOKEN) == "boom <token> boom"
    assert fetch.scrub("nothing", "") == "nothing"
