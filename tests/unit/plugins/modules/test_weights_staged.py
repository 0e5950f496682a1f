"""gb10.cluster.weights_staged (module): read-only, check mode, the records of a staged folder."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.modules import weights_staged as module
from roles.weights.files import gb10_stage as stage


def _run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("check", [False, True])
def test_staged_and_not(capsys, tmp_path, check):
    root = tmp_path / "m"
    root.mkdir()
    (root / "w.safetensors").write_bytes(b"w" * 3000)
    res = _run(capsys, dir=str(root), _ansible_check_mode=check)
    assert res["changed"] is False and res["staged"] is False and res["reason"] == "no manifest from an earlier staging"
    assert stage.main(["manifest", str(root), "--chunk-bytes", "1000"]) == 0
    capsys.readouterr()
    res = _run(capsys, dir=str(root), _ansible_check_mode=check)
    assert res["changed"] is False and res["staged"] is True and res["files"] == 1 and res["total_bytes"] == 3000
    source = {"w.safetensors": [3000, 1]}
    res = _run(capsys, dir=str(root), source=source)
    assert res["staged"] is False and "control machine" in res["reason"]
    (root / ".gb10-stage" / "source.json").write_text(json.dumps(source))
    assert _run(capsys, dir=str(root), source=source)["staged"] is True


def test_the_documentation_parses_and_matches_the_argument_spec():
    from pathlib import Path

    import yaml

    from ansible_collections.gb10.cluster.plugins.lookup import tree_stat as lookup

    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    assert doc["module"] == "weights_staged"
    source = Path(module.__file__).read_text()
    for option in doc["options"]:
        assert f'"{option}"' in source, f"{option} documented but not in argument_spec"
    assert yaml.safe_load(lookup.DOCUMENTATION)["name"] == "tree_stat"
    yaml.safe_load(lookup.EXAMPLES)
    yaml.safe_load(lookup.RETURN)


def test_the_lookup_reads_the_folder_and_names_a_missing_one(tmp_path):
    from ansible.errors import AnsibleLookupError

    from ansible_collections.gb10.cluster.plugins.lookup.tree_stat import LookupModule

    (tmp_path / "w.safetensors").write_bytes(b"123")
    got = LookupModule().run([str(tmp_path)], variables={})
    assert got == [{"w.safetensors": [3, (tmp_path / "w.safetensors").stat().st_mtime_ns]}]
    with pytest.raises(AnsibleLookupError, match="is not a folder; check the weights' folder on the control machine"):
        LookupModule().run([str(tmp_path / "missing")], variables={})
