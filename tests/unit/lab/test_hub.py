"""lab/hub.py: the Hub-like endpoint answers like huggingface.co where a download looks, and only with the token."""
from __future__ import annotations

import http.client
import json

import pytest

from lab import hub as labhub
from tests.support.hub import served_hub

TOKEN = "hf_labHubToken_0123456789"
REPO = "lab-org/tiny-fetch"


@pytest.fixture
def served(tmp_path):
    with served_hub(tmp_path, REPO, TOKEN) as served:
        yield served


def _get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_make_repo_is_reproducible(tmp_path):
    a = labhub.make_repo(tmp_path / "a", REPO, 1)
    b = labhub.make_repo(tmp_path / "b", REPO, 1)
    assert a == b and len(a["revision"]) == 40
    assert a["files"] == 4 and a["all_files"] == 5 and a["bytes"] > 2**20


def test_every_hub_route_needs_the_token(served):
    port, info, server = served
    paths = [f"/api/models/{REPO}/revision/{info['revision']}", f"/{REPO}/resolve/{info['revision']}/config.json",
             f"/{REPO}/resolve/main/model-00001-of-00002.safetensors"]
    for path in paths:
        for headers in ({}, {"Authorization": "Bearer hf_not_the_token"}):
            resp, _ = _get(port, path, headers)
            assert resp.status == 401, (path, headers)
    assert server.stats["unauthorized"] == 6
    with open(server.log_path) as f:
        assert TOKEN not in f.read()


def test_info_resolve_redirect_and_range(served):
    port, info, server = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp, body = _get(port, f"/api/models/{REPO}/revision/{info['revision']}?blobs=true", auth)
    doc = json.loads(body)
    assert resp.status == 200 and doc["sha"] == info["revision"] and doc["id"] == REPO
    shard = next(s for s in doc["siblings"] if s["rfilename"] == "model-00001-of-00002.safetensors")
    assert shard["lfs"]["size"] == shard["size"] and len(shard["lfs"]["sha256"]) == 64
    # a small file: the bytes, with the commit and a Range answered with 206
    resp, body = _get(port, f"/{REPO}/resolve/{info['revision']}/config.json", {**auth, "Range": "bytes=2-"})
    assert resp.status == 206 and resp.getheader("X-Repo-Commit") == info["revision"]
    config = next(f for f in server.repos[REPO]["files"] if f["path"] == "config.json")
    with open(config["file"], "rb") as f:
        assert body == f.read()[2:]
    # an lfs file: a redirect to the CDN with the linked etag and size (as HEAD, what huggingface_hub sends)
    resp, _ = _get(port, f"/{REPO}/resolve/main/model-00001-of-00002.safetensors", auth, "HEAD")
    assert resp.status == 302 and resp.getheader("X-Linked-Etag") == f'"{shard["lfs"]["sha256"]}"'
    assert resp.getheader("X-Linked-Size") == str(shard["size"])
    location = resp.getheader("Location")
    assert location.startswith(f"http://127.0.0.1:{server.cdn_port}/cdn/") and server.cdn_port != port
    cdn = location.split(f":{server.cdn_port}", 1)[1]
    # the CDN (another origin) serves the signed URL without a token, refuses it with one and a bad signature
    resp, body = _get(server.cdn_port, cdn)
    assert resp.status == 200 and len(body) == shard["size"]
    assert _get(server.cdn_port, cdn, auth)[0].status == 400 and server.stats["cdn_with_authorization"] == 1
    assert _get(server.cdn_port, cdn.split("?")[0] + "?sig=0")[0].status == 403
    assert _get(port, cdn)[0].status == 404, "the Hub's own port has no CDN route"


def test_unknown_repo_and_revision_are_404(served):
    port, _, _ = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp, _ = _get(port, "/api/models/lab-org/nope/revision/main", auth)
    assert resp.status == 404 and resp.getheader("X-Error-Code") == "RepoNotFound"
    resp, _ = _get(port, f"/api/models/{REPO}/revision/{'0' * 40}", auth)
    assert resp.status == 404 and resp.getheader("X-Error-Code") == "RevisionNotFound"


def test_tree_lists_files_and_folders_as_the_hub_does(served):
    """GET /api/models/<repo>/tree/<rev>?recursive=true: what huggingface_hub's snapshot_download reads."""
    port, info, _ = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp, body = _get(port, f"/api/models/{REPO}/tree/{info['revision']}?recursive=true", auth)
    entries = {e["path"]: e for e in json.loads(body)}
    assert resp.status == 200 and entries["original"]["type"] == "directory"
    assert entries["original/consolidated.00.pth"]["lfs"]["size"] == 4096
    assert entries["config.json"]["type"] == "file" and "lfs" not in entries["config.json"]
    resp, body = _get(port, f"/api/models/{REPO}/tree/main", auth)
    assert "original/consolidated.00.pth" not in {e["path"] for e in json.loads(body)}, "not recursive: top level only"
    assert _get(port, f"/api/models/{REPO}/tree/main")[0].status == 401
