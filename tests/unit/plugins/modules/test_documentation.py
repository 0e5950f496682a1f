"""Every module of gb10.cluster documents itself as ansible-doc reads it (ansible-test's validate-modules
cannot run here: it bootstraps a venv from a host this machine cannot reach). DOCUMENTATION, EXAMPLES and
RETURN are YAML; DOCUMENTATION names the module and documents exactly the options its argument_spec takes,
with the same types, defaults, choices and required flags."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

MODULES = Path(__file__).resolve().parents[4] / "collections" / "ansible_collections" / "gb10" / "cluster" / "plugins" / "modules"
NAMES = sorted(p.stem for p in MODULES.glob("*.py") if p.stem != "__init__")


class _Spec(Exception):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("argument_spec captured")
        self.kwargs = kwargs


def _argument_spec(name: str, mod: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The options the module takes: what its main() hands to AnsibleModule (or, for the switch modules,
    to routeros_module, which adds community.routeros' documented connection options), or the action
    plugin's ARGUMENT_SPEC for a module file that only documents an action plugin."""
    if not hasattr(mod, "main"):
        action = importlib.import_module(f"ansible_collections.gb10.cluster.plugins.action.{name}")
        return action.ARGUMENT_SPEC

    def capture(*args: Any, **kwargs: Any) -> None:
        raise _Spec(kwargs.get("argument_spec", args[0] if args else {}))

    monkeypatch.setattr(mod, "routeros_module" if hasattr(mod, "routeros_module") else "AnsibleModule", capture)
    with pytest.raises(_Spec) as got:
        mod.main()
    return got.value.kwargs


def _descriptions(node: Any, where: list[Any]) -> list[tuple[str, Any]]:
    """Every description and short_description, item by item, with where it is."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "short_description"):
                items = value if isinstance(value, list) else [value]
                found += [("/".join(map(str, [*where, key])), item) for item in items]
            found += _descriptions(value, [*where, key])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _descriptions(value, [*where, i])
    return found


def test_every_module_is_checked() -> None:
    assert len(NAMES) >= 20, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_documentation_is_yaml_and_matches_the_argument_spec(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = importlib.import_module(f"ansible_collections.gb10.cluster.plugins.modules.{name}")
    docs = {}
    for part in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
        text = getattr(mod, part, None)
        assert isinstance(text, str) and text.strip(), f"{name}: no {part}"
        try:
            docs[part] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            pytest.fail(f"{name}: {part} is not YAML (ansible-doc cannot read it): {exc}")
    doc = docs["DOCUMENTATION"]
    for part in ("DOCUMENTATION", "RETURN"):
        for where, text in _descriptions(docs[part], [part]):
            assert isinstance(text, str), (
                f"{name}: {where} holds {text!r}, not text (a ': ' in a list item makes YAML read it as a mapping; "
                "ansible-doc then fails)")
    assert doc["module"] == name
    assert doc.get("short_description") and doc.get("description")
    assert isinstance(docs["EXAMPLES"], list) and docs["EXAMPLES"], f"{name}: EXAMPLES holds no task"
    assert isinstance(docs["RETURN"], dict) or docs["RETURN"] is None

    spec = _argument_spec(name, mod, monkeypatch)
    options = doc.get("options") or {}
    assert set(options) == set(spec), (
        f"{name}: documented options {sorted(set(options) - set(spec))} are not taken, "
        f"taken options {sorted(set(spec) - set(options))} are not documented")
    for key, arg in spec.items():
        assert options[key].get("description"), f"{name}: option {key} has no description"
        assert options[key].get("type", "str") == arg.get("type", "str"), (
            f"{name}: option {key} is documented as {options[key].get('type', 'str')}, taken as {arg.get('type', 'str')}")
        if arg.get("type") == "list":
            assert options[key].get("elements") == arg.get("elements"), f"{name}: option {key}'s elements"
        for flag in ("required", "default", "choices"):
            if flag in arg and not (flag == "required" and not arg[flag]):
                assert options[key].get(flag) == arg[flag], f"{name}: option {key}'s {flag}"


def test_ansible_doc_reads_every_module() -> None:
    """ansible-doc itself, on every module at once (this is what an operator runs)."""
    import os
    import subprocess
    import sys

    doc = Path(sys.executable).parent / "ansible-doc"
    res = subprocess.run([str(doc), *(f"gb10.cluster.{n}" for n in NAMES)], capture_output=True, text=True,
                         timeout=300, cwd=MODULES.parents[5], check=False,
                         env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("> MODULE gb10.cluster.") == len(NAMES), res.stdout[:500]
