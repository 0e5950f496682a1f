"""The lab-only shim of the lab vLLM image (lab/serving/image/shim): with GB10_LAB_CPU_RAY=1 it gives
vLLM's CPU platform the Ray device key "GPU" as soon as vllm.platforms.cpu is imported, and makes the
CPU build's shared-memory group name host-specific (ranks on several hosts fall back to
torch.distributed), in any Python process; without the variable it changes nothing. Runs against a
stand-in vllm package (the two classes as vLLM 0.32 defines them, reduced to what the shim touches)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SHIM = Path(__file__).resolve().parents[3] / "lab" / "serving" / "image" / "shim"


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    pkg = tmp_path / "vllm" / "platforms"
    pkg.mkdir(parents=True)
    (tmp_path / "vllm" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "cpu.py").write_text('class CpuPlatform:\n    device_name = "cpu"\n    ray_device_key = ""\n')
    comm = tmp_path / "vllm" / "distributed" / "device_communicators"
    comm.mkdir(parents=True)
    (tmp_path / "vllm" / "distributed" / "__init__.py").write_text("")
    (comm / "__init__.py").write_text("")
    # vLLM 0.32's _CPUSHMDistributed.make_group_name, verbatim but for the communicator's fields.
    (comm / "cpu_communicator.py").write_text(
        "import os\n"
        "class _CPUSHMDistributed:\n"
        "    @staticmethod\n"
        "    def make_group_name(communicator):\n"
        "        instance_identifier = os.environ['VLLM_DIST_IDENT']\n"
        "        instance_identifier = f'{instance_identifier}-{communicator.unique_name}'\n"
        "        group_ranks = [str(rank) for rank in communicator.ranks]\n"
        "        return f\"{instance_identifier}-[{'-'.join(group_ranks)}]-cpushm\"\n"
    )
    # The image installs the .pth next to the module in site-packages; a site dir does the same here.
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    for name in ("gb10_lab_cpu_ray.py", "gb10_lab_cpu_ray.pth"):
        (site_dir / name).write_bytes((SHIM / name).read_bytes())
    return tmp_path


def run_python(root: Path, env_value: str | None, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GB10_LAB_CPU_RAY"}
    if env_value is not None:
        env["GB10_LAB_CPU_RAY"] = env_value
    env["PYTHONPATH"] = str(root)
    env["VLLM_DIST_IDENT"] = "34933"
    code = f"import site; site.addsitedir({str(root / 'site')!r}); " + code
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def ray_key(root: Path, env_value: str | None) -> str:
    return run_python(root, env_value, "import vllm.platforms.cpu as c; print(repr(c.CpuPlatform.ray_device_key))")


def shm_name(root: Path, env_value: str | None) -> str:
    return run_python(root, env_value, (
        "import types; import vllm.distributed.device_communicators.cpu_communicator as m; "
        "c = types.SimpleNamespace(unique_name='tp:0', ranks=[0, 1]); "
        "print(m._CPUSHMDistributed.make_group_name(c))"))


def test_the_shim_sets_the_ray_device_key_when_switched_on(fake_vllm: Path) -> None:
    assert ray_key(fake_vllm, "1") == "'GPU'"


@pytest.mark.parametrize("value", [None, "0", ""])
def test_the_shim_changes_nothing_when_off(fake_vllm: Path, value: str | None) -> None:
    assert ray_key(fake_vllm, value) == "''"


def test_the_shm_group_name_names_the_host_when_switched_on(fake_vllm: Path) -> None:
    """Ranks on two hosts compute two names (vLLM then falls back to torch.distributed, as natively);
    ranks on one host still agree (the shared-memory all-reduce stays where it works)."""
    assert shm_name(fake_vllm, "1") == f"34933-tp:0-[0-1]-cpushm-{socket.gethostname()}"


@pytest.mark.parametrize("value", [None, "0"])
def test_the_shm_group_name_is_vllms_own_when_off(fake_vllm: Path, value: str | None) -> None:
    assert shm_name(fake_vllm, value) == "34933-tp:0-[0-1]-cpushm"


def test_only_the_lab_image_installs_it() -> None:
    """The lab image's Dockerfile copies the shim; no rack image build (roles/ray_image) mentions it."""
    root = SHIM.parents[3]
    assert "gb10_lab_cpu_ray" in (root / "lab" / "serving" / "image" / "Dockerfile").read_text()
    rack = [p for p in (root / "roles").rglob("*") if p.is_file() and "gb10_lab_cpu_ray" in p.read_text(errors="ignore")]
    assert rack == []
