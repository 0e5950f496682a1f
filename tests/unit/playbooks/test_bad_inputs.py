"""Bad inputs an operator can give are refused before any host is contacted, in one sentence.

Table-driven: each row runs a real entry point (site.yml, serve.yml or plan.yml) through ansible-runner
against a copy of the sample inventory whose nodes sit on loopback addresses where no SSH server
answers (see test_site_refuses_bad_inventory.py). A row passes when the run fails, the failure message
holds every expected fragment (what is wrong and where), and the event stream shows no host but
localhost: nothing was reached, so nothing changed. A last pair of tests shows the same inventory with
good inputs does get past the checks and then stops in the preflight, naming the silent nodes.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.module_utils import catalog as gb10_catalog
from ansible_collections.gb10.cluster.plugins.module_utils import inventory as gb10_inventory
from ansible_collections.gb10.cluster.plugins.module_utils import serving as gb10_serving
from tests.support.catalog import lab_extra, merged_catalog
from tests.support.playbooks import ROOT, make_inventory, run_playbook

API_KEY = "k" * 24  # a stand-in key (these runs never reach a node)
DIGEST = "sha256:" + "ab" * 32
LAB_PIN = {"repository": "127.0.0.1:5000/gb10/vllm-cpu", "tag": "lab", "digest": DIGEST}


def _lab_extra_with_tp(model: str, tp: int) -> dict[str, Any]:
    """The lab's gb10_catalog_extra with one entry's tensor parallel size changed."""
    extra = copy.deepcopy(lab_extra())
    extra[model]["launch"]["tensor_parallel_size"] = tp
    return extra


def _drop_nodes(*names: str) -> Callable[[dict], None]:
    def change(nodes: dict) -> None:
        for name in names:
            del nodes[name]
    return change


def _set(host: str, key: str, value: Any) -> Callable[[dict], None]:
    def change(nodes: dict) -> None:
        nodes[host][key] = value
    return change


def _fabric(host: str, twin: str, address: str) -> Callable[[dict], None]:
    def change(nodes: dict) -> None:
        nodes[host]["gb10_fabric_addresses"][twin] = address
    return change


@dataclass
class Case:
    id: str
    playbook: str
    fragments: list[str]
    extravars: dict[str, Any] = field(default_factory=dict)
    change: Callable[[dict], None] = lambda nodes: None
    # Extra group_vars/all of the inventory copy (the serving settings a real inventory keeps there).
    group_all: dict[str, Any] = field(default_factory=lambda: {"vllm_serve_api_key": API_KEY,
                                                               "gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}})


PLAN_QUIET = {"memory_plan_draw_chart": False}

CASES = [
    # An unknown model name.
    Case("serve-unknown-model", "serve.yml", ["Unknown model 'nope' (-e model): use one of", "tiny-qwen3"],
         {"model": "nope"}),
    Case("plan-unknown-model", "plan.yml", ["Unknown model 'nope' (-e model): use one of", "qwen3.5-397b-a17b-fp8"],
         {"model": "nope", **PLAN_QUIET}),
    # A model that does not fit.
    Case("plan-does-not-fit", "plan.yml", ["qwen3.5-397b-a17b-fp8 does not fit on 2 node(s)"],
         {"model": "qwen3.5-397b-a17b-fp8", "nodes": "2", **PLAN_QUIET}),
    Case("serve-too-few-nodes", "serve.yml",
         ["qwen3.5-397b-a17b-fp8 needs 4 node(s) but the inventory group has 2; add nodes or pick a smaller model"],
         {"model": "qwen3.5-397b-a17b-fp8"}, _drop_nodes("gx10-3", "gx10-4")),
    # Tensor parallel that does not divide the attention heads.
    Case("plan-tp-vs-heads", "plan.yml",
         ["3 nodes gives tensor_parallel_size 3, which does not divide the model's 32 attention heads"],
         {"model": "qwen3.5-397b-a17b-fp8", "nodes": "3", **PLAN_QUIET}),
    Case("serve-tp-vs-heads", "serve.yml",
         ["gb10_catalog_extra['tiny-qwen3'].launch: tensor_parallel_size 3 does not divide the model's 4 attention "
          "heads", "use one of 1, 2, 4 (inventory "],
         {"model": "tiny-qwen3", "gb10_catalog_extra": _lab_extra_with_tp("tiny-qwen3", 3)}),
    # A twin address outside its twin's subnet.
    Case("site-twin-outside-subnet", "site.yml",
         ["gx10-4: twin enp1s0f1np1 is in 192.168.105.0/24 but on gx10-1 it is in 192.168.100.0/24"],
         change=_fabric("gx10-4", "enp1s0f1np1", "192.168.105.14/24")),
    Case("serve-twin-outside-subnet", "serve.yml",
         ["gx10-4: twin enp1s0f1np1 is in 192.168.105.0/24 but on gx10-1 it is in 192.168.100.0/24"],
         {"model": "tiny-qwen3"}, _fabric("gx10-4", "enp1s0f1np1", "192.168.105.14/24")),
    # A string where a boolean is expected.
    Case("serve-ray-maybe", "serve.yml",
         ["-e serve_ray=maybe is not a boolean (extra variables); give -e serve_ray=true or -e serve_ray=false."],
         {"model": "tiny-qwen3", "serve_ray": "maybe"}),
    Case("inventory-role-boolean", "site.yml",
         ["gx10-2: dgx_node_ssh_key_only is 'yes please' (str); write true or false without quotes."],
         change=_set("gx10-2", "dgx_node_ssh_key_only", "yes please")),
    Case("inventory-become-string", "serve.yml",
         ["gx10-1: ansible_become is 'false' (str); write true or false without quotes."],
         {"model": "tiny-qwen3"}, _set("gx10-1", "ansible_become", "false")),
    # A missing vault secret.
    Case("serve-no-api-key", "serve.yml",
         ["vllm_serve_api_key is not set", "ansible-vault", "--ask-vault-pass or --vault-password-file"],
         {"model": "tiny-qwen3"}, group_all={"gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}}),
    Case("serve-short-api-key", "serve.yml",
         ["vllm_serve_api_key has 6 characters", "at least 16"],
         {"model": "tiny-qwen3"}, group_all={"vllm_serve_api_key": "secret",
                                             "gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}}),
    # An image without a digest.
    Case("serve-pin-without-digest", "serve.yml",
         ["tiny-qwen3: the image 127.0.0.1:5000/gb10/vllm-cpu:lab is not pinned by digest",
          "gb10_image_pins['lab-vllm-cpu'].digest is ''"],
         {"model": "tiny-qwen3"},
         group_all={"vllm_serve_api_key": API_KEY, "gb10_image_pins": {"lab-vllm-cpu": {**LAB_PIN, "digest": ""}}}),
    Case("serve-pin-as-string", "serve.yml",
         ["gb10_image_pins['lab-vllm-cpu'] is '127.0.0.1:5000/gb10/vllm-cpu:lab' (inventory), not a mapping"],
         {"model": "tiny-qwen3"},
         group_all={"vllm_serve_api_key": API_KEY, "gb10_image_pins": {"lab-vllm-cpu": "127.0.0.1:5000/gb10/vllm-cpu:lab"}}),
    Case("serve-catalog-without-digest", "serve.yml",
         ["qwen3-next-80b-a3b: the image", "is not pinned by digest (gb10_catalog['qwen3-next-80b-a3b'].image.digest is '')"],
         {"model": "qwen3-next-80b-a3b"}),
]


def _inventory(tmp_path: Path, case_change: Callable[[dict], None], group_all: dict[str, Any]) -> Path:
    inv = make_inventory(tmp_path, case_change)
    (inv / "group_vars" / "all" / "serving.yml").write_text(yaml.safe_dump(group_all))
    return inv


def _touched(result) -> set[str]:
    """Hosts a task ran for (a skipped task touches nothing)."""
    return {e["event_data"].get("host") for e in result.events
            if e.get("event", "") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")
            and e["event_data"].get("host")}


def _failure_message(result) -> str:
    failures = [e for e in result.events if e.get("event") == "runner_on_failed"
                and not e["event_data"].get("ignore_errors")]
    assert failures, f"the run did not fail (status {result.status})"
    return str(failures[-1]["event_data"]["res"].get("msg"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_refused_before_any_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, case.change, case.group_all)
    extravars = dict(case.extravars)
    if case.playbook == "plan.yml":
        extravars["memory_plan_artifacts_dir"] = str(tmp_path / "artifacts")
    result = run_playbook(tmp_path, case.playbook, inv, extravars)
    assert result.status == "failed"
    msg = _failure_message(result)
    for fragment in case.fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    assert _touched(result) == {"localhost"}, f"hosts other than localhost were reached: {_touched(result)}"


def test_vaulted_key_without_vault_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vaulted API key and no vault password: one sentence on how to give it, no node reached."""
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, lambda nodes: None, {"gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}})
    password = tmp_path / "vault-pass"
    password.write_text("not-given-to-the-run\n")
    vaulted = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password),
         "--stdin-name", "vllm_serve_api_key"],
        input=API_KEY, capture_output=True, text=True, check=True,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
    ).stdout
    (inv / "group_vars" / "all" / "vault.yml").write_text("---\n" + vaulted)
    result = run_playbook(tmp_path, "serve.yml", inv, {"model": "tiny-qwen3"})
    assert result.status == "failed"
    msg = _failure_message(result)
    assert "vllm_serve_api_key is encrypted with ansible-vault but cannot be decrypted" in msg
    assert "--ask-vault-pass or --vault-password-file" in msg
    assert API_KEY not in "".join(str(e.get("stdout", "")) for e in result.events)
    assert _touched(result) == {"localhost"}


def test_good_serve_request_gets_to_the_preflight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: good inputs pass every check above and stop only in the preflight, which names each
    silent node with the address it tried (nothing listens on those loopback ports)."""
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, lambda nodes: None, {"vllm_serve_api_key": API_KEY,
                                                    "gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}})
    result = run_playbook(tmp_path, "serve.yml", inv, {"model": "tiny-qwen3", "serve_ray": "false",
                                                       "gb10_preflight_timeout": 2})
    assert result.status == "failed"
    msg = _failure_message(result)
    for i in range(1, 5):
        assert f"gx10-{i} (127.0.0.{100 + i}) does not answer over SSH within 2 s" in msg
    assert "nothing was changed: bring them up or remove them from the inventory" in msg
    tasks_on_nodes = {e["event_data"].get("task") for e in result.events
                      if e.get("event", "").startswith("runner_on_") and e["event_data"].get("host", "").startswith("gx10")}
    assert tasks_on_nodes == {"Preflight | Wait for SSH (short)", "Preflight | Every node answered"}


# ------------------------------------------------------------------------------ the helpers, directly
def test_boolean_options_come_from_the_role_specs() -> None:
    specs = {role: yaml.safe_load(path.read_text())
             for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml"))
             for role in [path.parent.parent.name]}
    names = gb10_inventory.boolean_options(specs)
    assert {"dgx_node_ssh_key_only", "switch_qos_enabled", "vllm_serve_rollback"} <= set(names)
    assert "switch_api_port" not in names
    assert gb10_inventory.boolean_options({"x": {"argument_specs": {"main": {"options": {
        "x_on": {"type": "bool"}, "x_n": {"type": "int"}}}}}, "broken": None}) == ["x_on"]


def test_role_booleans_are_checked_in_the_inventory() -> None:
    groups = {"gx10": ["gx10-1"]}
    hostvars = {"gx10-1": {"ansible_host": "192.168.1.101", "gb10_mgmt_subnet": "192.168.1.0/24",
                           "gb10_fabric_twins": [{"interface": "a", "rdma_device": "ra"}],
                           "gb10_fabric_addresses": {"a": "192.168.100.11/24"}, "x_on": "yes please"}}
    assert gb10_inventory.validate(groups, hostvars) == []
    assert gb10_inventory.validate(groups, hostvars, boolean_vars=["x_on"]) == [
        "gx10-1: x_on is 'yes please' (str); write true or false without quotes."]


@pytest.mark.parametrize("value,ok", [("true", True), ("False", True), ("yes", True), ("0", True), (True, True),
                                      (None, True), ("maybe", False), ("", False), (2, False)])
def test_extra_var_booleans(value: Any, ok: bool) -> None:
    errors = gb10_inventory.extra_var_bool_errors({"serve_ray": value})
    assert (errors == []) is ok
    if not ok:
        assert errors == [f"-e serve_ray={value} is not a boolean (extra variables); "
                          "give -e serve_ray=true or -e serve_ray=false."]


def test_silent_nodes_and_the_sentence() -> None:
    results = {"gx10-1": {"failed": False, "elapsed": 0},
               "gx10-2": {"failed": True, "msg": "timed out waiting for ping module test:\n  banner exchange"},
               "gx10-3": {"unreachable": True, "msg": "ssh: connect to host 10.0.0.13 port 22: No route"}}
    silent = gb10_inventory.silent_nodes(["gx10-1", "gx10-2", "gx10-3", "gx10-4"], results,
                                         {"gx10-2": "10.0.0.12", "gx10-3": "10.0.0.13", "gx10-4": "10.0.0.14"})
    assert [s["host"] for s in silent] == ["gx10-2", "gx10-3", "gx10-4"]
    assert silent[2]["reason"] == "no answer"  # the check never ran there
    one = gb10_inventory.unreachable_message(silent[:1], 10)
    assert one == ("gx10-2 (10.0.0.12) does not answer over SSH within 10 s: timed out waiting for ping module "
                   "test: banner exchange; nothing was changed: bring it up or remove it from the inventory "
                   "(or --limit), then run again.")
    many = gb10_inventory.unreachable_message(silent, 5)
    assert "gx10-3 (10.0.0.13) does not answer over SSH within 5 s" in many and "bring them up" in many
    assert gb10_inventory.unreachable_message([], 5) == ""


def test_switch_sentence_names_address_and_port() -> None:
    msg = gb10_inventory.switch_unreachable_message("crs804", "192.168.1.2", 8729, 10)
    assert msg.startswith("The switch crs804 does not answer on 192.168.1.2:8729 (RouterOS api-ssl, switch_api_port) "
                          "within 10 s; nothing was changed:")


def test_request_errors() -> None:
    catalog = {"a": {}, "b": {}}
    assert gb10_serving.request_errors("a", catalog, ["n1"], "gx10", 24) == []
    assert gb10_serving.request_errors("", catalog, ["n1"], "gx10", 24) == [
        "No model given: run serve.yml -e model=<name> with one of a, b."]
    assert gb10_serving.request_errors("c", catalog, ["n1"], "gx10", 24) == [
        "Unknown model 'c' (-e model): use one of a, b."]
    no_hosts = gb10_serving.request_errors("a", catalog, [], "rack", 24)
    assert no_hosts == ["The inventory has no hosts in group 'rack' (serve_group): put the GB10 nodes there "
                        "or name their group with -e serve_group=<group>."]
    assert gb10_serving.request_errors("a", catalog, ["n1"], "gx10", 0)[0].startswith("vllm_serve_api_key is not set:")
    assert gb10_serving.request_errors("a", catalog, ["n1"], "gx10", 15) == [
        "vllm_serve_api_key has 15 characters (inventory, ansible-vault); use a key of at least 16, "
        "e.g. openssl rand -hex 24."]


def test_pin_errors() -> None:
    entry = {"serving": {"image_pin": "lab-vllm-cpu"}}
    assert gb10_serving.pin_errors("m", entry, {"lab-vllm-cpu": LAB_PIN}) == []
    assert gb10_serving.pin_errors("m", entry, None) == []
    assert gb10_serving.pin_errors("m", entry, {"other": "x:y"}) == []  # not this model's pin
    assert gb10_serving.pin_errors("m", entry, {"m": "repo:tag"}) == [
        "gb10_image_pins['m'] is 'repo:tag' (inventory), not a mapping; write it as "
        "{repository: <registry/name>, tag: <tag>, digest: 'sha256:<64 hex>'}."]
    assert gb10_serving.pin_errors("m", entry, ["x"])[0].startswith("gb10_image_pins is ['x'] (inventory)")


def test_heads_sentence_says_what_to_use() -> None:
    inventory = ROOT / "inventory" / "lab"
    entry = merged_catalog(_lab_extra_with_tp("tiny-qwen3", 3), inventory)["tiny-qwen3"]
    errors = gb10_catalog.entry_errors("tiny-qwen3", entry, str(ROOT))
    assert errors == ["gb10_catalog_extra['tiny-qwen3'].launch: tensor_parallel_size 3 does not divide the model's "
                      f"4 attention heads; use one of 1, 2, 4 (inventory {inventory})."]


def _only_the_inventory_check(result) -> bool:
    """Every task event on a node comes from the inventory check, a play with `connection: local` whose
    tasks run on the control machine: no node was contacted."""
    return all(str(e["event_data"].get("play")).startswith("Check the inventory before touching any host")
               for e in result.events
               if e.get("event", "").startswith("runner_on_") and e["event_data"].get("host") not in (None, "localhost"))


def test_limit_cannot_skip_the_inventory_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--limit gx10-1 leaves localhost out of the run: the inventory is still checked (on the control
    machine, once) and a mistake elsewhere in it still stops site.yml before any node is reached."""
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, _fabric("gx10-4", "enp1s0f1np1", "192.168.105.14/24"),
                     {"vllm_serve_api_key": API_KEY, "gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}})
    result = run_playbook(tmp_path, "site.yml", inv, cmdline="--limit gx10-1")
    assert result.status == "failed"
    msg = _failure_message(result)
    assert "gx10-4: twin enp1s0f1np1 is in 192.168.105.0/24 but on gx10-1 it is in 192.168.100.0/24" in msg
    assert _touched(result) == {"gx10-1"} and _only_the_inventory_check(result)


def test_serve_refuses_a_limit_without_localhost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, lambda nodes: None, {"vllm_serve_api_key": API_KEY,
                                                    "gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}})
    result = run_playbook(tmp_path, "serve.yml", inv, {"model": "tiny-qwen3"}, cmdline="--limit gx10")
    assert result.status == "failed"
    msg = _failure_message(result)
    assert ("serve.yml works from the control machine (localhost) but --limit 'gx10' leaves it out; "
            "add it (--limit 'gx10,localhost') or run without --limit.") in msg
    assert _only_the_inventory_check(result)
