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

from tests.support.catalog import lab_extra
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
    # A twin address inside the management subnet (it would cut the node's SSH session), both twins on
    # one subnet: refused by site.yml and by playbooks/nodes.yml run on its own.
    Case("site-twin-in-mgmt-subnet", "site.yml",
         ["gx10-1: gb10_fabric_addresses.enp1s0f1np1 127.0.0.1/24 is inside the management subnet gb10_mgmt_subnet "
          "127.0.0.0/8, so the node would answer SSH out of the twin and drop the session"],
         change=_fabric("gx10-1", "enp1s0f1np1", "127.0.0.1/24")),
    Case("nodes-twin-in-mgmt-subnet", "playbooks/nodes.yml",
         ["gx10-1: gb10_fabric_addresses.enp1s0f1np1 127.0.0.1/24 is inside the management subnet gb10_mgmt_subnet"],
         change=_fabric("gx10-1", "enp1s0f1np1", "127.0.0.1/24")),
    Case("nodes-twins-one-subnet", "playbooks/nodes.yml",
         ["gx10-3: both twins (enp1s0f1np1 and enP2p1s0f1np1) are in 192.168.100.0/24 (gb10_fabric_addresses)"],
         change=_fabric("gx10-3", "enP2p1s0f1np1", "192.168.100.99/24")),
    # A launch override serve.yml takes as plan.yml does, with a wrong value; one plan.yml takes that serve.yml does not.
    Case("serve-bad-override", "serve.yml",
         ["-e max_model_len=lots is not a positive integer; give a whole number such as 131072."],
         {"model": "tiny-qwen3", "max_model_len": "lots"}),
    Case("serve-plan-only-override", "serve.yml",
         ["-e node_mem_available_bytes: serve.yml measures MemAvailable on every serving node just before the start"],
         {"model": "tiny-qwen3", "node_mem_available_bytes": "1000"}),
    # A string where a boolean is expected.
    Case("serve-ray-maybe", "serve.yml",
         ["-e serve_ray=maybe is not a boolean (extra variables); give -e serve_ray=true or -e serve_ray=false."],
         {"model": "tiny-qwen3", "serve_ray": "maybe"}),
    Case("site-converge-mode", "site.yml",
         ["gb10_converge is 'always'; use auto", "or full (every role runs), e.g. -e gb10_converge=full."],
         {"gb10_converge": "always"}),
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


@pytest.mark.parametrize(("token", "said"), [(None, "not set"), ("short-token", "shorter than 32 characters")])
def test_serve_refuses_to_start_ray_without_its_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      token: str | None, said: str) -> None:
    """Ray runs only with its token authentication (issue 14): without ray_cluster_auth_token, or with a short
    one, serve.yml stops before any host, in one sentence naming the Ray nodes and how to make a token."""
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, lambda nodes: None, {"vllm_serve_api_key": API_KEY,
                                                    "gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}})
    (inv / "group_vars" / "all" / "ray_auth.yml").unlink()
    if token:
        (inv / "group_vars" / "all" / "ray_auth.yml").write_text(yaml.safe_dump({"ray_cluster_auth_token": token}))
    result = run_playbook(tmp_path, "serve.yml", inv, {"model": "tiny-qwen3", "gb10_preflight_timeout": 2})
    assert result.status == "failed"
    msg = _failure_message(result)
    assert msg.startswith(f"tiny-qwen3 starts Ray on gx10-1, gx10-2, gx10-3, gx10-4, but ray_cluster_auth_token is {said}"), msg
    assert "openssl rand -hex 32" in msg and "ansible-vault" in msg
    assert _touched(result) == {"localhost"}


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


def test_nodes_checks_the_inventory_with_a_limit_and_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """playbooks/nodes.yml on its own, the way docs/fabric.md re-runs the fabric (--limit one node, --tags
    cx7_fabric, the twin address given with -e): the inventory check still runs first and refuses a twin
    address inside the management subnet before any node is contacted."""
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, lambda nodes: None, {"vllm_serve_api_key": API_KEY,
                                                    "gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}})
    wrong = {"enp1s0f1np1": "127.0.0.1/24", "enP2p1s0f1np1": "192.168.101.11/24"}
    result = run_playbook(tmp_path, "playbooks/nodes.yml", inv, {"gb10_fabric_addresses": wrong},
                          cmdline="--limit gx10-1 --tags cx7_fabric")
    assert result.status == "failed"
    msg = _failure_message(result)
    assert "gx10-1: gb10_fabric_addresses.enp1s0f1np1 127.0.0.1/24 is inside the management subnet" in msg
    assert _touched(result) == {"gx10-1"} and _only_the_inventory_check(result)


def test_an_imported_check_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """site.yml imports the check, then playbooks/nodes.yml, which imports it too: the second is skipped.
    (A playbook of the same two imports, since site.yml itself stops in the preflight here.)"""
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, lambda nodes: None, {"vllm_serve_api_key": API_KEY,
                                                    "gb10_image_pins": {"lab-vllm-cpu": LAB_PIN}})
    book = tmp_path / "site-like.yml"
    book.write_text(yaml.safe_dump([
        {"name": "Inventory validation", "ansible.builtin.import_playbook": str(ROOT / "playbooks" / "boilerplate.yml")},
        {"name": "Nodes", "ansible.builtin.import_playbook": str(ROOT / "playbooks" / "nodes.yml")},
    ]))
    result = run_playbook(tmp_path, str(book), inv)
    summary = [e["event"] for e in result.events if e.get("event", "").startswith("runner_on_")
               and e["event_data"].get("task") == "Validate inventory | Summary"]
    assert summary.count("runner_on_ok") == 1 and "runner_on_skipped" in summary, summary
    # and then nodes.yml went on to the nodes (unreachable on loopback): the skipped check stopped nothing
    assert {e["event_data"].get("host") for e in result.events if e.get("event") == "runner_on_unreachable"} == {
        "gx10-1", "gx10-2", "gx10-3", "gx10-4"}


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
