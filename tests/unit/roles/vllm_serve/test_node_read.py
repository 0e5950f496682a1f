"""roles/vllm_serve/vars/main.yml's one read per node (tasks/current.yml), run for real with a stand-in
`docker` on PATH, and split by the filter the role uses (gb10.cluster.serving_node_reads)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from ansible_collections.gb10.cluster.plugins.filter.serving import serving_node_reads

ROOT = Path(__file__).resolve().parents[4]
ARGV = yaml.safe_load((ROOT / "roles" / "vllm_serve" / "vars" / "main.yml").read_text())["vllm_serve_node_read_argv"]

# What the role's Jinja gives as arguments 1..6 (the Go templates, the Ray container, the two files).
PS_FMT = '{{.Label "gb10.serving.model"}} {{.Label "gb10.serving.hash"}} {{.Label "gb10.serving.role"}} {{.State}}'
# The script checks the real path of Debian's default site (this machine's, in the test).
DEFAULT_SITE = Path("/etc/nginx/sites-enabled/default").exists()
RAY_FMT = '{{.State.Status}} {{index .Config.Labels "gb10.ray.hash"}}'


def _docker(tmp_path: Path, ps_rc: int = 0, vllm: bool = True, ray: bool = True, nginx: bool = True) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # dpkg-query and systemctl as on a head with nginx installed, enabled and running (or without nginx).
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\n" + ("printf 'install ok installed\\n'\n" if nginx else "exit 1\n"))
    (bin_dir / "systemctl").write_text("#!/bin/sh\n" + ('[ "$1" = is-enabled ] && echo enabled\n[ "$1" = is-active ] && echo active\nexit 0\n'
                                                      if nginx else 'echo not-found; exit 4\n'))
    for tool in ("dpkg-query", "systemctl"):
        (bin_dir / tool).chmod(0o755)
    script = f"""#!/bin/sh
case "$1" in
  ps) [ "$5" = '--format' ] && [ "$6" = '{PS_FMT}' ] || {{ echo "bad ps args: $*" >&2; exit 9; }}
      {'echo "tiny-qwen3 abc123 api running"' if vllm else 'true'}; exit {ps_rc} ;;
  inspect)
    if [ "$4" = gb10-vllm ]; then {'echo 2' if vllm else 'echo "Error: No such object" >&2; exit 1'}; fi
    if [ "$4" = gb10-ray ] && [ "$3" = '{RAY_FMT}' ]; then {'echo "running r9"' if ray else 'exit 1'}; fi ;;
  logs) [ "$2" = gb10-vllm ] || exit 1
      echo 'INFO loading'; echo 'INFO [kv_cache_utils.py] GPU KV cache size: 2,097,152 tokens' >&2
      echo 'INFO [kv_cache_utils.py] Maximum concurrency for 4,096 tokens per request: 512.00x' ;;
esac
"""
    (bin_dir / "docker").write_text(script)
    (bin_dir / "docker").chmod(0o755)
    return bin_dir


def _read(tmp_path: Path, bin_dir: Path, host: str, ray_container: str, head: bool = False) -> dict:
    argv = ARGV[:3] + ["sh", PS_FMT, "{{.RestartCount}}", ray_container, RAY_FMT,
                       str(tmp_path / "stopped.json"), str(tmp_path / "deployment.json"), "gb10-vllm" if head else ""]
    r = subprocess.run(argv, capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, check=False)
    return {"item": host, "rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


def test_a_serving_head_with_ray_a_guard_stop_and_the_record(tmp_path):
    assert ARGV[:2] == ["sh", "-c"] and len(ARGV) == 11
    bin_dir = _docker(tmp_path)
    (tmp_path / "stopped.json").write_text('{"reason": "MemAvailable below the floor"}\n')
    (tmp_path / "deployment.json").write_text('{"hash": "abc123", "image": "x@sha256:1"}\n')
    got = _read(tmp_path, bin_dir, "gx10-1", "gb10-ray", head=True)
    assert got["rc"] == 0, got["stderr"]
    state = serving_node_reads({"results": [got]})
    assert state["ps"]["results"] == [{"item": "gx10-1", "rc": 0, "stdout": "tiny-qwen3 abc123 api running"}]
    assert state["restarts"] == {"gx10-1": 2}
    assert state["ray"] == {"gx10-1": "running r9"}
    assert state["guard"]["results"][0]["stdout"] == '{"reason": "MemAvailable below the floor"}'
    assert state["record"] == {"gx10-1": '{"hash": "abc123", "image": "x@sha256:1"}'}
    assert state["proxy"] == {"gx10-1": {"installed": True, "default_site": DEFAULT_SITE, "enabled": True, "active": True}}
    # The head's KV cache lines (stdout and stderr of docker logs), as the report's own read would give them.
    assert state["kv"] == {"gx10-1": "INFO [kv_cache_utils.py] GPU KV cache size: 2,097,152 tokens\n"
                                     "INFO [kv_cache_utils.py] Maximum concurrency for 4,096 tokens per request: 512.00x"}


def test_an_empty_node_and_a_node_outside_ray(tmp_path):
    bin_dir = _docker(tmp_path, vllm=False, ray=False, nginx=False)
    got = _read(tmp_path, bin_dir, "gx10-3", "")
    assert got["rc"] == 0, got["stderr"]
    state = serving_node_reads({"results": [got]})
    assert state["ps"]["results"][0]["stdout"] == "" and state["restarts"] == {}
    assert state["ray"] == {"gx10-3": ""} and state["record"] == {}
    assert state["guard"]["results"][0]["stdout"] == ""
    assert state["proxy"] == {"gx10-3": {"installed": False, "default_site": DEFAULT_SITE, "enabled": False, "active": False}}
    assert state["kv"] == {}


def test_docker_down_fails_the_read(tmp_path):
    got = _read(tmp_path, _docker(tmp_path, ps_rc=1), "gx10-2", "gb10-ray")
    assert got["rc"] == 1


def test_the_node_plays_reads_take_the_delegated_loops_shape(tmp_path):
    """serve.yml reads every node in its node play (tasks/node_read.yml): node_read_results turns those
    per-host registered reads into the loop's result, in the order of the hosts, and the split agrees."""
    from ansible.errors import AnsibleFilterError

    from ansible_collections.gb10.cluster.plugins.filter.serving import node_read_results

    bin_dir = _docker(tmp_path)
    head = {k: v for k, v in _read(tmp_path, bin_dir, "gx10-1", "gb10-ray").items() if k != "item"}
    other = {k: v for k, v in _read(tmp_path, bin_dir, "gx10-2", "").items() if k != "item"}
    hostvars = {"gx10-2": {"vllm_serve_node_read": other}, "gx10-1": {"vllm_serve_node_read": head}, "gx10-3": {}}
    loop = node_read_results(["gx10-1", "gx10-2"], hostvars, "vllm_serve_node_read")
    assert [r["item"] for r in loop["results"]] == ["gx10-1", "gx10-2"]
    state = serving_node_reads(loop)
    assert state["ray"] == {"gx10-1": "running r9", "gx10-2": ""} and state["restarts"] == {"gx10-1": 2, "gx10-2": 2}
    try:
        node_read_results(["gx10-1", "gx10-3"], hostvars, "vllm_serve_node_read")
    except AnsibleFilterError as exc:
        assert "no read of what serves from gx10-3" in str(exc)
    else:
        raise AssertionError("a node with no read must be refused")


def test_raws_terminal_and_sudos_notice_do_not_change_the_read(tmp_path):
    """serve.yml's node play runs the read with raw: its terminal ends lines in CRLF and joins anything sudo
    prints first; the filter reads the same as from the command module."""
    bin_dir = _docker(tmp_path)
    (tmp_path / "stopped.json").write_text('{"reason": "MemAvailable below the floor"}\n')
    (tmp_path / "deployment.json").write_text('{"hash": "abc123", "image": "x@sha256:1"}\n')
    clean = _read(tmp_path, bin_dir, "gx10-1", "gb10-ray", head=True)
    raw = dict(clean, stdout="sudo: unable to resolve host gx10-1: Name or service not known\r\n"
               + clean["stdout"].replace("\n", "\r\n"))
    assert clean["stdout"].startswith("#gb10-read-begin#\n")
    assert serving_node_reads({"results": [raw]}) == serving_node_reads({"results": [clean]})
    assert serving_node_reads({"results": [raw]})["ps"]["results"][0]["stdout"] == "tiny-qwen3 abc123 api running"
