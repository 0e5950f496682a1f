#!/usr/bin/env python3
"""gb10-hf-fetch: download one pinned revision of a Hugging Face model repository, token from a file.

    gb10_hf_fetch.py check DEST --repo OWNER/NAME --revision SHA
    gb10_hf_fetch.py download DEST --repo OWNER/NAME --revision SHA --token-file FILE
                     [--endpoint URL] [--exclude GLOB]... [--progress FILE] [--workers N]

The token is read from FILE (root-only, written by the role with no_log and removed after the run): it
never appears on a command line, in an environment block or in the output. It is sent only to the
endpoint itself, never across a redirect to another host (the Hub sends large files from a CDN whose
signed URLs need no token, and some CDNs refuse a request that carries two credentials).

What it speaks (the part of the Hub API huggingface_hub's snapshot_download uses):
  GET  <endpoint>/api/models/<repo>/revision/<sha>?blobs=true  the files of the revision with sizes
  GET  <endpoint>/<repo>/resolve/<sha>/<path>                   each file, resumed with Range; the
       X-Repo-Commit header must name the pinned revision, large files (lfs) are checked by sha256.

Files are written to DEST/<path>: a partial download lives in DEST/.gb10-stage/hf/<path>.incomplete
and is resumed on the next run. When every file is there, DEST/.gb10-stage/hf-complete.json records
the repository, revision and sizes, so `check` answers without the network (and without the token).
Progress (files and bytes) goes to the progress file in the form the weights role prints; one JSON
line on stdout is the result, with one sentence in "error" when the download failed (HTTP 401: the
token was refused; 403: no access to a gated repository; 404: repository or revision not found...).
Standard library only (runs with the node's python3).
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

STAGE_DIR = ".gb10-stage"
PARTIAL_DIR = "hf"
COMPLETE = "hf-complete.json"
DEFAULT_ENDPOINT = "https://huggingface.co"
BLOCK = 1 << 20
TIMEOUT_S = 60
PROGRESS_EVERY_S = 1.0
USER_AGENT = "gb10-cluster-hf-fetch/1"


class FetchError(Exception):
    """A download that cannot go on: the message is one sentence for the operator."""


# ------------------------------------------------------------------------------------------- http
def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, with the scheme's default port."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects; the token goes along only to the same origin (scheme, host, port: a renamed repo).

    The Authorization header is added with add_unredirected_header, which urllib never copies to a
    redirected request; this handler adds it back when the target has the request's origin, which is
    the rule huggingface_hub follows too (a CDN or storage host gets a signed URL and no token)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 (urllib's signature)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        if new is not None and auth and origin(newurl) == origin(req.full_url):
            new.add_unredirected_header("Authorization", auth)
        return new


_OPENER = urllib.request.build_opener(_Redirects)


class Hub:
    """The endpoint, the token and the repository: requests and the operator's sentences for HTTP errors."""

    def __init__(self, endpoint: str, repo: str, revision: str, token: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.repo = repo
        self.revision = revision
        self.token = token

    def request(self, url: str, headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
        if self.token:
            req.add_unredirected_header("Authorization", f"Bearer {self.token}")
        try:
            return _OPENER.open(req, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as err:
            raise FetchError(self.http_sentence(err.code, url)) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise FetchError(f"cannot reach {self.endpoint} for {self.repo} ({reason}): check the node's route and DNS "
                             f"to the Hub (weights_hf_endpoint) and run again; what was downloaded is kept") from None

    def http_sentence(self, code: int, url: str) -> str:
        where = f"{self.endpoint} answered HTTP {code} for {self.repo}"
        if code == 401:
            return (f"{where}: the token was refused (missing, wrong or revoked); put a valid read token in "
                    f"gb10_hf_token (ansible-vault) and run again")
        if code == 403:
            return (f"{where}: the token has no access to this repository (gated or private); accept its terms "
                    f"or get access on the Hub with the token's account, then run again")
        if code == 404:
            return (f"{where} at revision {self.revision}: repository, revision or file not found; check hf_repo "
                    f"and hf_revision of the model's catalog entry")
        if code == 416:
            return f"{where}: a resumed range was refused ({urllib.parse.urlsplit(url).path}); run again"
        if code == 429:
            return f"{where}: too many requests (rate limited); wait a few minutes and run again"
        return f"{where}: the Hub failed ({urllib.parse.urlsplit(url).path}); run again later"

    def files(self) -> list[dict[str, Any]]:
        """The revision's files: [{"path", "size", "sha256" (lfs files) or None}]."""
        url = (f"{self.endpoint}/api/models/{self.repo}/revision/{urllib.parse.quote(self.revision, safe='')}"
               f"?blobs=true")
        with self.request(url, {"Accept": "application/json"}) as resp:
            try:
                info = json.loads(resp.read())
            except ValueError:
                raise FetchError(f"{self.endpoint} did not answer JSON for {self.repo}: is weights_hf_endpoint a "
                                 f"Hugging Face Hub?") from None
        sha = info.get("sha")
        if sha and sha != self.revision:
            raise FetchError(f"{self.endpoint} gave revision {sha} of {self.repo} for {self.revision}: pin the full "
                             f"40-hex commit in hf_revision")
        out = []
        for sib in info.get("siblings") or []:
            path = str(sib.get("rfilename", ""))
            rel = Path(path)
            if not path or rel.is_absolute() or ".." in rel.parts or rel.parts[0] == STAGE_DIR:
                raise FetchError(f"{self.endpoint} listed an unsafe file name in {self.repo}: {path!r}")
            lfs = sib.get("lfs") or {}
            size = lfs.get("size", sib.get("size"))
            out.append({"path": path, "size": int(size) if size is not None else None, "sha256": lfs.get("sha256")})
        return out

    def resolve_url(self, path: str) -> str:
        return (f"{self.endpoint}/{self.repo}/resolve/{urllib.parse.quote(self.revision, safe='')}/"
                f"{urllib.parse.quote(path)}")


# ------------------------------------------------------------------------------------------- progress
class Progress:
    """Files and bytes done, written atomically to the progress file at most once a second."""

    def __init__(self, path: str | None, files_total: int, total: int) -> None:
        self.path = path
        self.files_total = files_total
        self.total = total
        self.files = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.last = 0.0

    def add(self, nbytes: int = 0, files: int = 0, force: bool = False) -> None:
        with self.lock:
            self.bytes += nbytes
            self.files += files
            now = time.monotonic()
            if force or now - self.last >= PROGRESS_EVERY_S:
                self.last = now
                self._write(now)

    def _write(self, now: float, state: str | None = None) -> None:
        if not self.path:
            return
        elapsed = max(now - self.start, 1e-6)
        doc = {"state": state or f"downloading, {self.files}/{self.files_total} files,", "bytes": self.bytes,
               "total": self.total, "files": self.files, "files_total": self.files_total,
               "rate_bps": int(self.bytes / elapsed), "elapsed_s": int(elapsed)}
        tmp = f"{self.path}.tmp"
        try:  # best effort: a full disk must not stop the download over a progress line
            Path(tmp).write_text(json.dumps(doc))
            os.replace(tmp, self.path)
        except OSError:
            pass

    def finish(self, state: str) -> None:
        with self.lock:
            self._write(time.monotonic(), state)


# ------------------------------------------------------------------------------------------- download
def wanted(files: list[dict[str, Any]], exclude: list[str]) -> list[dict[str, Any]]:
    return [f for f in files if not any(fnmatch.fnmatch(f["path"], pat) for pat in exclude)]


def _complete_path(dest: Path) -> Path:
    return dest / STAGE_DIR / COMPLETE


def check(dest: Path, repo: str, revision: str) -> dict[str, Any]:
    """Complete when the stamp names this repository and revision and every file has its size."""
    try:
        stamp = json.loads(_complete_path(dest).read_text())
    except (OSError, ValueError):
        return {"complete": False, "reason": "not downloaded yet"}
    if stamp.get("repo") != repo or stamp.get("revision") != revision:
        return {"complete": False, "reason": f"{stamp.get('repo')}@{stamp.get('revision')} was downloaded here"}
    for path, size in (stamp.get("files") or {}).items():
        try:
            if (dest / path).stat().st_size != size:
                return {"complete": False, "reason": f"{path} changed size"}
        except OSError:
            return {"complete": False, "reason": f"{path} is missing"}
    return {"complete": True, "files": len(stamp.get("files") or {}), "bytes": sum((stamp.get("files") or {}).values())}


def fetch_file(hub: Hub, dest: Path, entry: dict[str, Any], progress: Progress) -> int:
    """Download one file (resuming a partial one); the bytes received this run."""
    final = dest / entry["path"]
    size = entry["size"]
    if size is not None and final.is_file() and final.stat().st_size == size:
        progress.add(size, 1)
        return 0
    part = dest / STAGE_DIR / PARTIAL_DIR / f"{entry['path']}.incomplete"
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    digest = hashlib.sha256()
    if have and entry["sha256"]:
        with part.open("rb") as f:
            for block in iter(lambda: f.read(BLOCK), b""):
                digest.update(block)
    got = 0
    if size is None or have < size or size == 0:
        headers = {"Range": f"bytes={have}-"} if have else {}
        with hub.request(hub.resolve_url(entry["path"]), headers) as resp:
            commit = resp.headers.get("X-Repo-Commit")
            if commit and commit != hub.revision:
                raise FetchError(f"{hub.endpoint} served {entry['path']} of {hub.repo} from revision {commit}, not "
                                 f"the pinned {hub.revision}; run again (if it persists, the endpoint is not the Hub)")
            if have and resp.status != 206:  # the server ignored the range: start over
                have = 0
                digest = hashlib.sha256()
            progress.add(have)
            with part.open("r+b" if have else "wb") as out:
                out.seek(have)
                out.truncate()
                for block in iter(lambda: resp.read(BLOCK), b""):
                    out.write(block)
                    digest.update(block)
                    got += len(block)
                    progress.add(len(block))
    else:
        progress.add(have)
    total = part.stat().st_size
    if size is not None and total != size:
        raise FetchError(f"{entry['path']} of {hub.repo} ended at {total} of {size} bytes (connection cut); run again: "
                         f"the download resumes where it stopped")
    if entry["sha256"] and digest.hexdigest() != entry["sha256"]:
        part.unlink()
        raise FetchError(f"{entry['path']} of {hub.repo} does not match its sha256 from the Hub (corrupted in "
                         f"transit); run again")
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    progress.add(0, 1)
    return got


def download(dest: Path, hub: Hub, exclude: list[str], progress_path: str | None, workers: int) -> dict[str, Any]:
    started = time.monotonic()
    files = wanted(hub.files(), exclude)
    total = sum(f["size"] or 0 for f in files)
    progress = Progress(progress_path, len(files), total)
    progress.add(force=True)
    (dest / STAGE_DIR).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(files) or 1))) as pool:
        received = sum(pool.map(lambda f: fetch_file(hub, dest, f, progress), files))
    stamp = {"repo": hub.repo, "revision": hub.revision, "endpoint": hub.endpoint,
             "files": {f["path"]: (dest / f["path"]).stat().st_size for f in files}}
    tmp = _complete_path(dest).with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True))
    os.replace(tmp, _complete_path(dest))
    progress.finish(f"done, {len(files)}/{len(files)} files,")
    return {"complete": True, "changed": received > 0, "files": len(files), "bytes": sum(stamp["files"].values()),
            "received_bytes": received, "seconds": round(time.monotonic() - started, 1)}


def read_token(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as err:
        raise FetchError(f"cannot read the token file {path} ({err.strerror}): the role writes it before the "
                         f"download; run the play again") from None


def scrub(text: str, secret: str) -> str:
    """The message without the secret, whatever put it there."""
    return text.replace(secret, "<token>") if secret else text


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    d = sub.add_parser("download")
    for q in (c, d):
        q.add_argument("dest")
        q.add_argument("--repo", required=True)
        q.add_argument("--revision", required=True)
    d.add_argument("--token-file", required=True)
    d.add_argument("--endpoint", default=DEFAULT_ENDPOINT)
    d.add_argument("--exclude", action="append", default=[])
    d.add_argument("--progress")
    d.add_argument("--workers", type=int, default=4)
    args = p.parse_args(argv)
    dest = Path(args.dest)
    if args.cmd == "check":
        print(json.dumps(check(dest, args.repo, args.revision)))
        return 0
    token = ""
    try:
        token = read_token(args.token_file)
        result = download(dest, Hub(args.endpoint, args.repo, args.revision, token), args.exclude, args.progress,
                          args.workers)
    except FetchError as err:
        print(json.dumps({"complete": False, "changed": False, "error": scrub(str(err), token)}))
        return 1
    except OSError as err:  # the disk: full, read-only, permissions
        print(json.dumps({"complete": False, "changed": False, "error": scrub(
            f"writing the download to {dest} failed ({err.strerror}: {err.filename}): free space there or set "
            f"weights_dir to a larger disk, then run again", token)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
