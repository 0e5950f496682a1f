"""A Hugging-Face-Hub-like endpoint for the lab: the part of the Hub API a model download uses, token required.

    python -m lab.hub make-repo DIR [--repo lab-org/tiny-fetch] [--mib 8]   a tiny model repository; prints
                                                                          {"repo", "revision", "bytes", ...}
    python -m lab.hub start --repos DIR --listen IP:PORT --token-file FILE [--rate BPS] --state DIR
    python -m lab.hub stop --state DIR
    python -m lab.hub serve ...                                           the server in the foreground

Routes (as huggingface.co answers them; huggingface_hub's snapshot_download and `hf download` use them):
  GET  /api/models/<owner>/<name>[/revision/<rev>]   model info: sha and siblings (size, lfs sha256 with ?blobs)
  GET  /api/models/<owner>/<name>/tree/<rev>[/<dir>]  the file list (?recursive=true) that snapshot_download reads
  HEAD|GET /<owner>/<name>/resolve/<rev>/<path>       small files: the bytes, ETag, X-Repo-Commit;
                                                      lfs files (*.safetensors, *.bin, *.pth): 302 to the "CDN"
                                                      with X-Linked-Etag, X-Linked-Size, X-Repo-Commit
  GET  :<port+1>/cdn/<sha256>?sig=...                 the CDN (another origin): a signed URL, no token; one that carries an
                                                      Authorization header is refused (400), as S3 refuses two
                                                      credentials, so a client that forwards the token fails
  GET  /_lab/stats                                    counters for the tests (from 127.0.0.1 and the lab only)

Every Hub route needs `Authorization: Bearer <token>` with the token of --token-file (401 otherwise, with the
Hub's X-Error-Code). Range requests get 206. --rate paces all responses together (bytes per second), so a
download of a few MiB lasts long enough to be watched. The token is read from a file, never from the command
line; the access log names method, path and status, never a header.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf")
BLOCK = 64 * 1024


# ------------------------------------------------------------------------------------------- repositories
def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def scan_repo(folder: Path) -> dict[str, Any]:
    """Files of a repository folder with sizes and hashes, and a revision (40 hex) derived from them."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        entry: dict[str, Any] = {"path": rel, "size": len(data), "blob": git_blob_sha1(data), "file": str(path)}
        if rel.endswith(LFS_SUFFIXES):
            entry["sha256"] = hashlib.sha256(data).hexdigest()
        files.append(entry)
    body = json.dumps([[f["path"], f["blob"]] for f in files]).encode()
    return {"revision": hashlib.sha1(body, usedforsecurity=False).hexdigest(), "files": files}


def load_repos(root: Path) -> dict[str, dict[str, Any]]:
    """<root>/<owner>/<name>/ -> {"owner/name": scan}."""
    repos = {}
    for owner in sorted(p for p in root.iterdir() if p.is_dir()):
        for name in sorted(p for p in owner.iterdir() if p.is_dir()):
            repos[f"{owner.name}/{name.name}"] = scan_repo(name)
    return repos


def make_repo(root: Path, repo: str, mib: int) -> dict[str, Any]:
    """A tiny model repository: config, tokenizer, two safetensors shards (seeded random bytes) and an
    `original/` folder a download excludes. Same bytes every time (same revision)."""
    folder = root / repo
    rng = random.Random(repo)  # noqa: S311 (test data, not a secret)
    shard = mib * 2**20 // 2
    files = {
        "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64}, indent=1).encode(),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE"}}).encode(),
        "model-00001-of-00002.safetensors": rng.randbytes(shard),
        "model-00002-of-00002.safetensors": rng.randbytes(shard),
        "original/consolidated.00.pth": rng.randbytes(4096),
    }
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    scan = scan_repo(folder)
    kept = [f for f in scan["files"] if not f["path"].startswith("original/")]
    return {"repo": repo, "revision": scan["revision"], "files": len(kept), "bytes": sum(f["size"] for f in kept),
            "all_files": len(scan["files"])}


# ------------------------------------------------------------------------------------------- server
class Hub(ThreadingHTTPServer):
    """The Hub (role "hub") or its CDN (role "cdn": another port, so another origin, as cdn-lfs.hf.co is
    to huggingface.co). The two share repositories, token, signing key, pacing and counters."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], repos: dict[str, dict[str, Any]], token: str, rate: float,
                 log_path: str | None, hub: Hub | None = None) -> None:
        super().__init__(address, Handler)
        self.role = "cdn" if hub is not None else "hub"
        self.repos = repos
        self.token = token
        self.rate = rate
        self.log_path = log_path
        self.cdn_port = 0
        if hub is None:
            self.sign_key = os.urandom(16)
            self.lock = threading.Lock()
            self.pacing = [0.0]
            self.stats: dict[str, int] = {"requests": 0, "unauthorized": 0, "info": 0, "resolve": 0, "cdn": 0,
                                          "cdn_with_authorization": 0, "range": 0, "bytes_sent": 0}
        else:
            self.sign_key, self.lock, self.pacing, self.stats = hub.sign_key, hub.lock, hub.pacing, hub.stats
            hub.cdn_port = self.server_address[1]

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def pace(self, nbytes: int) -> None:
        """Hold the caller so that all responses together send at most ``rate`` bytes per second."""
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.pacing[0])
            self.pacing[0] = start + nbytes / self.rate
        if start > now:
            time.sleep(start - now)

    def sign(self, sha: str) -> str:
        return hmac.new(self.sign_key, sha.encode(), "sha256").hexdigest()[:32]

    def log(self, line: str) -> None:
        if self.log_path:
            with self.lock, open(self.log_path, "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {line}\n")


class Handler(BaseHTTPRequestHandler):
    server: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        # Method, path and status only: never a header (the Authorization header carries the token).
        self.server.log(f"{self.client_address[0]} {self.command} {urllib.parse.urlsplit(self.path).path} "
                        f"{args[1] if len(args) > 1 else ''}")

    # --------------------------------------------------------------------------------- helpers
    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
              ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, code: int, message: str, error_code: str = "") -> None:
        headers = {"X-Error-Message": message}
        if error_code:
            headers["X-Error-Code"] = error_code
        self._send(code, json.dumps({"error": message}).encode(), headers)

    def _authorized(self) -> bool:
        value = self.headers.get("Authorization", "")
        ok = hmac.compare_digest(value.encode(), f"Bearer {self.server.token}".encode())
        if not ok:
            self.server.count("unauthorized")
            self._error(401, "Invalid credentials in Authorization header" if value else
                        "Authentication required", "" if value else "RepoNotFound")
        return ok

    def _repo_rev(self, repo: str, rev: str) -> dict[str, Any] | None:
        scan = self.server.repos.get(repo)
        if scan is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        if rev not in ("main", scan["revision"]):
            self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return None
        return scan

    def _stream(self, path: str, size: int, headers: dict[str, str]) -> None:
        start, end = 0, size - 1
        rng = self.headers.get("Range", "")
        code = 200
        if rng.startswith("bytes="):
            self.server.count("range")
            first, _, last = rng[6:].partition("-")
            try:
                start = int(first) if first else max(size - int(last), 0)
                end = min(int(last), size - 1) if first and last else size - 1
            except ValueError:
                self._error(416, "Invalid range")
                return
            if start >= size and size > 0:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                return
            code = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
        length = max(end - start + 1, 0)
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                block = f.read(min(BLOCK, left))
                if not block:
                    break
                self.server.pace(len(block))
                self.wfile.write(block)
                self.server.count("bytes_sent", len(block))
                left -= len(block)

    # --------------------------------------------------------------------------------- routes
    def do_HEAD(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's name)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 (BaseHTTPRequestHandler's name)
        self.server.count("requests")
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        query = urllib.parse.parse_qs(url.query)
        if parts[:2] == ["_lab", "stats"]:
            self._send(200, json.dumps(self.server.stats).encode())
        elif self.server.role == "cdn":
            if parts[:1] == ["cdn"] and len(parts) == 2:
                self._cdn(parts[1], query)
            else:
                self._error(404, "Not found")
        elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            if self._authorized():
                self._tree(f"{parts[2]}/{parts[3]}", parts[5], "/".join(parts[6:]), "recursive" in url.query)
        elif parts[:2] == ["api", "models"] and len(parts) >= 4:
            if self._authorized():
                rev = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
                self._info(f"{parts[2]}/{parts[3]}", rev, "blobs" in query)
        elif len(parts) >= 5 and parts[2] == "resolve":
            if self._authorized():
                self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        else:
            self._error(404, "Not found")

    def _info(self, repo: str, rev: str, blobs: bool) -> None:
        scan = self._repo_rev(repo, rev)
        if scan is None:
            return
        self.server.count("info")
        siblings = []
        for f in scan["files"]:
            sib: dict[str, Any] = {"rfilename": f["path"]}
            if blobs:
                sib.update(size=f["size"], blobId=f["blob"])
                if "sha256" in f:
                    sib["lfs"] = {"sha256": f["sha256"], "size": f["size"], "pointerSize": 134}
            siblings.append(sib)
        doc = {"_id": hashlib.md5(repo.encode(), usedforsecurity=False).hexdigest()[:24], "id": repo, "modelId": repo,
               "sha": scan["revision"], "private": True, "gated": False, "disabled": False, "downloads": 0,
               "likes": 0, "tags": ["lab"], "library_name": "transformers", "lastModified": "2026-01-01T00:00:00.000Z",
               "createdAt": "2026-01-01T00:00:00.000Z", "siblings": siblings}
        self._send(200, json.dumps(doc).encode())

    def _tree(self, repo: str, rev: str, under: str, recursive: bool) -> None:
        """The files (and folders) of a revision, as /api/models/<repo>/tree/<rev>[/<path>] lists them
        (what huggingface_hub 1.x+ snapshot_download reads; one page, so no Link header)."""
        scan = self._repo_rev(repo, rev)
        if scan is None:
            return
        self.server.count("info")
        prefix = f"{under.rstrip('/')}/" if under else ""
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for f in scan["files"]:
            if not f["path"].startswith(prefix):
                continue
            rest = f["path"][len(prefix):]
            if "/" in rest:
                for depth in range(1, rest.count("/") + 1 if recursive else 2):
                    folders.add(prefix + "/".join(rest.split("/")[:depth]))
                if not recursive:
                    continue
            entry: dict[str, Any] = {"type": "file", "oid": f["blob"], "size": f["size"], "path": f["path"]}
            if "sha256" in f:
                entry["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "oid": hashlib.sha1(d.encode(), usedforsecurity=False).hexdigest(),
                     "size": 0, "path": d} for d in sorted(folders)]
        self._send(200, json.dumps(sorted(entries, key=lambda e: e["path"])).encode())

    def _resolve(self, repo: str, rev: str, path: str) -> None:
        scan = self._repo_rev(repo, rev)
        if scan is None:
            return
        entry = next((f for f in scan["files"] if f["path"] == path), None)
        if entry is None:
            self._error(404, "Entry not found", "EntryNotFound")
            return
        self.server.count("resolve")
        common = {"X-Repo-Commit": scan["revision"]}
        if "sha256" in entry:
            host = urllib.parse.urlsplit(f"//{self.headers.get('Host', '')}").hostname or self.server.server_address[0]
            sha = entry["sha256"]
            location = f"http://{host}:{self.server.cdn_port}/cdn/{sha}?sig={self.server.sign(sha)}"
            self._send(302, b"", {**common, "Location": location, "X-Linked-Etag": f'"{sha}"',
                                  "X-Linked-Size": str(entry["size"]), "ETag": f'"{entry["blob"]}"'})
            return
        self._stream(entry["file"], entry["size"], {**common, "ETag": f'"{entry["blob"]}"'})

    def _cdn(self, sha: str, query: dict[str, list[str]]) -> None:
        self.server.count("cdn")
        if self.headers.get("Authorization"):
            self.server.count("cdn_with_authorization")
            self._error(400, "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
                        "query string parameter or the Authorization header should be specified")
            return
        if not hmac.compare_digest((query.get("sig") or [""])[0], self.server.sign(sha)):
            self._error(403, "Access denied: bad signature")
            return
        entry = next((f for scan in self.server.repos.values() for f in scan["files"] if f.get("sha256") == sha), None)
        if entry is None:
            self._error(404, "Not found")
            return
        self._stream(entry["file"], entry["size"], {"ETag": f'"{sha}"'})


# ------------------------------------------------------------------------------------------- daemon
def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def serve(repos_dir: str, listen: str, token_file: str, rate: float, log_path: str | None) -> None:
    token = Path(token_file).read_text().strip()
    if len(token) < 8:
        raise SystemExit(f"lab.hub: the token in {token_file} is shorter than 8 characters")
    server, cdn = pair(_split_listen(listen), load_repos(Path(repos_dir)), token, rate, log_path)
    server.log(f"serving {sorted(server.repos)} on {listen}, CDN on port {cdn.server_address[1]} "
               f"(rate {rate or 'unlimited'} B/s)")

    def _stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown).start()
        threading.Thread(target=cdn.shutdown).start()

    signal.signal(signal.SIGTERM, _stop)
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    server.serve_forever()


def pair(address: tuple[str, int], repos: dict[str, dict[str, Any]], token: str, rate: float = 0.0,
         log_path: str | None = None) -> tuple[Hub, Hub]:
    """The Hub on ``address`` and its CDN on the next port (port 0: any free ports), not yet serving."""
    server = Hub(address, repos, token, rate, log_path)
    cdn_port = server.server_address[1] + 1 if address[1] else 0
    cdn = Hub((address[0], cdn_port), repos, token, rate, log_path, hub=server)
    return server, cdn


def start(args: argparse.Namespace) -> None:
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    stop(args, quiet=True)
    host, port = _split_listen(args.listen)
    cmd = [sys.executable, "-m", "lab.hub", "serve", "--repos", args.repos, "--listen", args.listen,
           "--token-file", args.token_file, "--rate", str(args.rate), "--log", str(state / "hub.log")]
    with open(state / "hub.out", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # noqa: S603
                                start_new_session=True, cwd=Path(__file__).resolve().parent.parent)
    (state / "hub.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"lab.hub: the server ended at once (rc {proc.returncode}); see {state / 'hub.out'}")
        try:
            with socket.create_connection((host, port), timeout=1):
                print(json.dumps({"pid": proc.pid, "listen": args.listen, "log": str(state / "hub.log")}))
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"lab.hub: nothing answers on {args.listen} after 20 s; see {state / 'hub.out'}")


def stop(args: argparse.Namespace, quiet: bool = False) -> None:
    pid_file = Path(args.state) / "hub.pid"
    if not pid_file.exists():
        if not quiet:
            print("lab.hub: not started here")
        return
    pid = int(pid_file.read_text().strip() or 0)
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    except ProcessLookupError:
        pass
    pid_file.unlink()
    if not quiet:
        print(f"lab.hub: stopped (pid {pid})")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.hub", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    m = sub.add_parser("make-repo")
    m.add_argument("dir")
    m.add_argument("--repo", default="lab-org/tiny-fetch")
    m.add_argument("--mib", type=int, default=8)
    for name in ("serve", "start"):
        s = sub.add_parser(name)
        s.add_argument("--repos", required=True)
        s.add_argument("--listen", required=True)
        s.add_argument("--token-file", required=True)
        s.add_argument("--rate", type=float, default=0.0)
        if name == "serve":
            s.add_argument("--log")
        else:
            s.add_argument("--state", required=True)
    t = sub.add_parser("stop")
    t.add_argument("--state", required=True)
    args = p.parse_args(argv)
    if args.action == "make-repo":
        print(json.dumps(make_repo(Path(args.dir), args.repo, args.mib)))
    elif args.action == "serve":
        serve(args.repos, args.listen, args.token_file, args.rate, args.log)
    elif args.action == "start":
        start(args)
    else:
        stop(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
