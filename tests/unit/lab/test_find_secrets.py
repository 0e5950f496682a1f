"""lab/find_secrets.py: the secret scan that molecule/serve runs must find what is there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lab import find_secrets

SCRIPT = Path(find_secrets.__file__)

SECRET = "lab-Zq0sV3cretValue-1234567890"
OTHER = "hf_notInAnyFile_abcdefgh"


@pytest.fixture
def open_dir():
    """A folder every user may enter (pytest's own tmp folders are 0700, so nothing there is world-readable)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(tmp_path: Path, *secrets: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], input="\n".join(secrets) + "\n",
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_world_readable_file_is_reported(open_dir: Path) -> None:
    tmp_path = open_dir
    leak = tmp_path / "etc" / "serving.env"
    leak.parent.mkdir()
    leak.parent.chmod(0o755)
    leak.write_text(f"VLLM_API_KEY={SECRET}\n")
    leak.chmod(0o644)
    result = run(tmp_path, SECRET, OTHER)
    assert result["world_readable"] == [str(leak)]
    assert result["files"][0]["secrets"] == [0]
    assert SECRET not in json.dumps(result)


def test_private_file_is_found_but_not_world_readable(open_dir: Path) -> None:
    tmp_path = open_dir
    key = tmp_path / "api-key.env"
    key.write_text(f"VLLM_API_KEY={SECRET}\n")
    key.chmod(0o600)
    result = run(tmp_path, SECRET)
    assert [f["path"] for f in result["files"]] == [str(key)]
    assert result["world_readable"] == []


def test_readable_file_in_a_closed_folder_is_not_world_readable(open_dir: Path) -> None:
    tmp_path = open_dir
    closed = tmp_path / "private"
    closed.mkdir()
    (closed / "log").write_text(f"token {SECRET}")
    (closed / "log").chmod(0o644)
    closed.chmod(0o700)
    try:
        assert run(tmp_path, SECRET)["world_readable"] == []
    finally:
        closed.chmod(0o755)


def test_secret_across_a_chunk_boundary(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(find_secrets, "CHUNK", 16)
    path = tmp_path / "big"
    path.write_bytes(b"x" * 13 + SECRET.encode() + b"y" * 40)
    assert find_secrets.file_hits(path, [SECRET.encode(), OTHER.encode()]) == [0]


def test_command_line_leak_is_reported(tmp_path: Path) -> None:
    # A value of its own: another test run on the machine may hold the module's SECRET on its command line.
    secret = f"lab-{os.getpid()}-{os.urandom(8).hex()}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", f"--api-key={secret}"])
    try:
        for _ in range(100):  # until the child has exec'd (before, /proc shows the parent's command line)
            hits = find_secrets.cmdline_hits([secret.encode()])
            if hits:
                break
            time.sleep(0.05)
        assert [h["pid"] for h in hits] == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_short_or_missing_secrets_are_refused(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], input="short\n", capture_output=True, text=True)
    assert out.returncode == 2 and "shorter than 8" in out.stdout
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], input="", capture_output=True, text=True)
    assert out.returncode == 2


def test_skipped_folders_are_not_walked(tmp_path: Path) -> None:
    inside = tmp_path / "overlay2"
    inside.mkdir()
    (inside / "f").write_text(SECRET)
    assert find_secrets.walk([str(tmp_path)], [SECRET.encode()], skip=(str(inside),)) == []
    assert len(find_secrets.walk([str(tmp_path)], [SECRET.encode()], skip=())) == 1
    assert os.path.exists(inside / "f")
