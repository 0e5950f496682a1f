"""modules/registry_copy.py: check mode copies nothing, a run copies, a second run changes nothing, a bad pin
fails in one sentence (two real docker-registry instances, tests/support/registries.py)."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.modules import registry_copy
from tests.support.registries import push, start_registries


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from start_registries(tmp_path_factory)


def _run(capsys, args: dict) -> dict:  # type: ignore[no-untyped-def]
    with patch_module_args(args), pytest.raises(SystemExit):
        registry_copy.main()
    return json.loads(capsys.readouterr().out)


def test_check_then_copy_then_nothing(capsys, registries, tmp_path) -> None:  # type: ignore[no-untyped-def]
    up, mirror = registries
    digest = push(up.addr, "gb10/mod", [b'{"os":"linux"}', b"m" * 70000])
    args = {"ref": f"{up.addr}/gb10/mod@{digest}", "mirror": mirror.addr, "upstream_insecure": True,
            "log_file": str(tmp_path / "copy.log")}
    before = up.blob_gets()
    check = _run(capsys, args | {"_ansible_check_mode": True})
    assert check["changed"] is True and [b["action"] for b in check["blobs"]] == ["copy", "copy"]
    assert up.blob_gets() == before
    first = _run(capsys, args)
    assert first["changed"] is True and first["bytes_copied"] == 70000 + 14 and up.blob_gets() == before + 2
    assert first["mirror_ref"].startswith(f"{mirror.addr}/127.0.0.1-") and first["mirror_ref"].endswith(digest)
    second = _run(capsys, args)
    assert second["changed"] is False and second["bytes_copied"] == 0 and up.blob_gets() == before + 2


def test_unpinned_ref_fails_in_one_sentence(capsys, registries) -> None:  # type: ignore[no-untyped-def]
    _, mirror = registries
    res = _run(capsys, {"ref": "nvcr.io/nvidia/vllm:26.10-py3", "mirror": mirror.addr})
    assert res["failed"] is True and "is not pinned by digest; give repository@sha256:<64 hex>" in res["msg"]


def test_unreachable_mirror_says_what_to_do(capsys) -> None:  # type: ignore[no-untyped-def]
    res = _run(capsys, {"ref": "nvcr.io/nvidia/vllm@sha256:" + "ab" * 32, "mirror": "127.0.0.1:1"})
    assert res["failed"] is True and "check that the mirror 127.0.0.1:1 runs (registry_mirror role)" in res["msg"]
