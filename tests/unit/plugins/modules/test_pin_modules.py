"""modules/image_resolve.py and modules/hf_revision.py: a real docker-registry and the lab's Hub; read-only (check
mode gives the same answer, changed=false), failures are one sentence, the token never comes back."""
from __future__ import annotations

import hashlib
import json
import threading

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.registry_mirror import RegistryClient
from ansible_collections.gb10.cluster.plugins.modules import hf_revision, image_resolve
from lab import hub as labhub
from tests.support.registries import push, start_registries

TOKEN = "hf_moduleTestToken_0123456789"
REPO = "lab-org/tiny-fetch"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from start_registries(tmp_path_factory)


def _run(capsys, module, args: dict) -> dict:  # type: ignore[no-untyped-def]
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_image_resolve(capsys, registries) -> None:  # type: ignore[no-untyped-def]
    up, _ = registries
    config = b'{"os":"linux","architecture":"arm64"}'
    digest = push(up.addr, "gb10/resolve", [config, b"r" * 5000])
    client = RegistryClient(up.addr, insecure=True)
    body = client.request("GET", f"/v2/gb10/resolve/manifests/{digest}", {"Accept": "application/vnd.oci.image.manifest.v1+json"}).read()
    client.request("PUT", "/v2/gb10/resolve/manifests/26.10", {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                   body=body, ok=(201,)).read()
    args = {"repository": f"{up.addr}/gb10/resolve", "tag": "26.10", "insecure": True}
    for extra in ({}, {"_ansible_check_mode": True}):
        res = _run(capsys, image_resolve, args | extra)
        assert res["changed"] is False and res["digest"] == digest
        assert res["image_id"] == "sha256:" + hashlib.sha256(config).hexdigest() and res["bytes"] == 5000
    bad = _run(capsys, image_resolve, args | {"tag": "27.01"})
    assert bad["failed"] is True and bad["msg"].endswith("(HTTP 404); check the repository and tag.")


def test_hf_revision(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    info = labhub.make_repo(tmp_path / "repos", REPO, 1)
    server, cdn = labhub.pair(("127.0.0.1", 0), labhub.load_repos(tmp_path / "repos"), TOKEN, 0, None)
    for s in (server, cdn):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        args = {"endpoint": f"http://127.0.0.1:{server.server_address[1]}", "repo": REPO, "token": TOKEN,
                "exclude": ["original/*"]}
        res = _run(capsys, hf_revision, args | {"_ansible_check_mode": True})
        assert res["changed"] is False and res["revision"] == info["revision"] and res["weight_files"] == 2
        assert len(res["files"]) == 4 and res["checkpoint_bytes"] == 2**20
        assert TOKEN not in json.dumps(res)
        bad = _run(capsys, hf_revision, args | {"token": "hf_wrong_token_000000"})
        assert bad["failed"] is True and "answered HTTP 401" in bad["msg"] and "hf_wrong" not in json.dumps(bad)
    finally:
        server.shutdown()
        cdn.shutdown()


@pytest.mark.parametrize("module", [image_resolve, hf_revision])
def test_docs_parse_and_match_the_options(module) -> None:  # type: ignore[no-untyped-def]
    import yaml

    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    source = open(module.__file__, encoding="utf-8").read()
    for option in doc["options"]:
        assert f'"{option}"' in source, f"{option} documented but not in argument_spec"
