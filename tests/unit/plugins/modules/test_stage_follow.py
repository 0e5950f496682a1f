"""stage_follow: the documentation stub of the action plugin says what the plugin accepts."""
from __future__ import annotations

import yaml

from ansible_collections.gb10.cluster.plugins.action.stage_follow import ARGUMENT_SPEC
from ansible_collections.gb10.cluster.plugins.modules import stage_follow as doc_stub


def test_documentation_matches_the_action_plugins_argument_spec():
    options = yaml.safe_load(doc_stub.DOCUMENTATION)["options"]
    assert set(options) == set(ARGUMENT_SPEC)
    for name, spec in ARGUMENT_SPEC.items():
        doc = options[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("required", False) == spec.get("required", False), name
        assert doc.get("default") == spec.get("default"), name
    yaml.safe_load(doc_stub.EXAMPLES)
    yaml.safe_load(doc_stub.RETURN)
