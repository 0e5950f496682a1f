"""One pull per rack: copy a digest-pinned image from its registry into the rack's mirror, once.

The rack's mirror is a plain registry on the control machine (Debian's ``docker-registry``). Each image
is copied into it ONCE, by digest, under ``<mirror>/<upstream registry>/<repository>`` (the manifest's
bytes unchanged, so its digest stays the pin), and the nodes pull it from there by that digest. Every blob
is fetched once from upstream, hashed on the way and refused when its sha256 differs; the mirror checks
the digests again when the upload commits, and the nodes' Docker checks them a third time on pull.

Why push-once and not the registry's pull-through proxy: ``registry`` 2.x in proxy mode serves one
upstream per instance, and on a cache miss fetches a blob from upstream twice (once to stream it to
the client, once to store it) and once more for every concurrent request (its ``inflight`` map only
stops double stores); ``daemon.json``'s ``registry-mirrors`` works for Docker Hub only. See docs/serving.md.

Plain typed Python (standard library only, no Ansible imports); the module ``gb10.cluster.registry_copy``
and the filter ``gb10.cluster.mirror_ref`` are thin wrappers.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)
CHUNK = 8 << 20


class MirrorError(Exception):
    """A copy that cannot go on; the message is the one sentence the operator reads."""


@dataclass(frozen=True)
class ImageRef:
    registry: str  # docker.io, nvcr.io, 10.77.0.1:5000
    repository: str  # nvidia/vllm, library/ubuntu
    digest: str  # sha256:<64 hex>

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


def split_registry(name: str) -> tuple[str, str]:
    """``[registry/]repository[:tag]`` -> (registry, repository[:tag]) as Docker reads it: the first part is a
    registry when it looks like a host; otherwise Docker Hub, whose one-part names live under library/."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, name if slash else f"library/{name}"


def parse_ref(ref: str) -> ImageRef:
    """``[registry/]repository[:tag]@sha256:<hex>`` as Docker reads it (Docker Hub names are normalised)."""
    text = str(ref or "").strip()
    name, sep, digest = text.partition("@")
    if not sep or not DIGEST_RE.match(digest):
        raise MirrorError(f"the image '{text}' is not pinned by digest; give repository@sha256:<64 hex>.")
    registry, path = split_registry(name)
    last = path.rsplit("/", 1)[-1]
    if ":" in last:  # a tag next to the digest is informational
        path = path[: len(path) - len(last)] + last.split(":", 1)[0]
    if not path or path != path.lower() or not re.fullmatch(r"[a-z0-9]+([._/-]+[a-z0-9]+)*", path):
        raise MirrorError(f"the image '{text}' has no valid repository name ('{path}').")
    return ImageRef(registry, path, digest)


def mirror_repository(ref: ImageRef) -> str:
    """Where an image lives in the mirror: its registry's name, then its repository (one mirror, all upstreams)."""
    # A path component holds no ':' (nvcr.io stays nvcr.io; a registry with a port, host:5000, is host-5000).
    return f"{ref.registry.lower().replace(':', '-')}/{ref.repository}"


def mirror_ref(ref: str, mirror: str) -> str:
    """The reference the nodes pull: ``<mirror>/<registry>/<repository>@<digest>``; ``ref`` itself when
    there is no mirror or the image already lives in it."""
    mirror = str(mirror or "").strip().rstrip("/")
    if not mirror:
        return str(ref)
    parsed = parse_ref(ref)
    if parsed.registry == mirror:
        return str(ref)
    return f"{mirror}/{mirror_repository(parsed)}@{parsed.digest}"


def pinned_refs(pins: Mapping[str, Any]) -> list[str]:
    """``repository@digest`` of every ``gb10_image_pins`` entry pinned by digest (sorted, no duplicates)."""
    refs = {f"{pin['repository']}@{pin['digest']}" for pin in pins.values()
            if isinstance(pin, Mapping) and pin.get("repository") and DIGEST_RE.match(str(pin.get("digest", "")))}
    return sorted(refs)


def mirror_errors(mirror: Any, images: Any) -> list[str]:
    """What is wrong with the mirror settings (no facts needed), one sentence each."""
    errors: list[str] = []
    text = str(mirror or "")
    if text and not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?", text):
        errors.append(f"gb10_registry_mirror is '{text}' (inventory); give the host:port the nodes reach the "
                      "control machine's registry on, e.g. 192.168.1.10:5001, or leave it empty for no mirror.")
    if not isinstance(images, list):
        errors.append(f"registry_mirror_images is {images!r}; give a list of repository@sha256:<digest> references.")
        return errors
    for image in images:
        try:
            parse_ref(str(image))
        except MirrorError as err:
            errors.append(f"registry_mirror_images: {err}")
    return errors


# --------------------------------------------------------------------------------------------- HTTP
def endpoint(registry: str) -> str:
    return DOCKER_HUB_ENDPOINT if registry == DOCKER_HUB else registry


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryClient:
    """Just enough of the registry HTTP API v2: manifests and blobs by digest, token auth, redirects."""

    def __init__(self, registry: str, insecure: bool = False, username: str = "", password: str = "",
                 timeout: float = 600.0) -> None:
        self.registry = registry
        self.host = endpoint(registry)
        self.scheme = "http" if insecure else "https"
        self.username = username
        self.password = password
        self.timeout = timeout
        self.auth: str | None = None

    def _conn(self, scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, timeout=self.timeout, context=ssl.create_default_context())
        return http.client.HTTPConnection(host, timeout=self.timeout)

    def _login(self, header: str) -> None:
        scheme, params = _challenge(header)
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode() if self.username else ""
        if scheme == "basic" and basic:
            self.auth = f"Basic {basic}"
            return
        if scheme != "bearer" or "realm" not in params:
            raise MirrorError(f"{self.registry} asks for authentication the mirror cannot give ({header[:120]}).")
        realm = urllib.parse.urlsplit(params["realm"])
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        path = realm.path + "?" + urllib.parse.urlencode(query) + (("&" + realm.query) if realm.query else "")
        conn = self._conn(realm.scheme, realm.netloc)
        conn.request("GET", path, headers={"Authorization": f"Basic {basic}"} if basic else {})
        res = conn.getresponse()
        body = res.read()
        if res.status != 200:
            raise MirrorError(f"{self.registry}'s token service refused the pull ({res.status}); check "
                              "registry_mirror_credentials for that registry.")
        data = json.loads(body or b"{}")
        token = data.get("token") or data.get("access_token")
        if not token:
            raise MirrorError(f"{self.registry}'s token service gave no token.")
        self.auth = f"Bearer {token}"

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None, body: Any = None,
                ok: Iterable[int] = (200,)) -> http.client.HTTPResponse:
        """One request; 401 logs in once, 3xx is followed (without the Authorization header)."""
        ok = tuple(ok)
        for attempt in range(2):
            hdrs = dict(headers or {})
            if self.auth:
                hdrs["Authorization"] = self.auth
            scheme, host, url = self.scheme, self.host, path
            for _ in range(6):
                conn = self._conn(scheme, host)
                conn.request(method, url, body=body, headers=hdrs)
                res = conn.getresponse()
                if res.status in (301, 302, 303, 307, 308) and res.getheader("Location"):
                    res.read()
                    loc = urllib.parse.urlsplit(urllib.parse.urljoin(f"{scheme}://{host}{url}", res.getheader("Location")))
                    scheme, host = loc.scheme, loc.netloc
                    url = loc.path + (("?" + loc.query) if loc.query else "")
                    hdrs.pop("Authorization", None)  # a CDN's signed URL refuses a second credential
                    continue
                break
            if res.status == 401 and attempt == 0 and res.getheader("WWW-Authenticate"):
                res.read()
                self._login(res.getheader("WWW-Authenticate") or "")
                continue
            if res.status not in ok:
                text = res.read()[:200].decode(errors="replace")
                raise MirrorError(f"{method} {self.registry}{path} answered {res.status} ({text.strip()}).")
            return res
        raise MirrorError(f"{self.registry} refused {path} after logging in; check its credentials.")

    def exists(self, kind: str, repository: str, digest: str) -> bool:
        headers = {"Accept": ACCEPT} if kind == "manifests" else {}
        res = self.request("HEAD", f"/v2/{repository}/{kind}/{digest}", headers, ok=(200, 404))
        res.read()
        return res.status == 200


@dataclass
class CopyResult:
    ref: str
    mirror_ref: str
    changed: bool
    blobs: list[dict[str, Any]]
    bytes_copied: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "mirror_ref": self.mirror_ref, "changed": self.changed, "blobs": self.blobs,
                "bytes_copied": self.bytes_copied, "seconds": round(self.seconds, 1)}


def platform_of(descriptor: Mapping[str, Any]) -> str:
    plat = descriptor.get("platform") or {}
    name = f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
    return name + (f"/{plat['variant']}" if plat.get("variant") else "")


def check_manifest(ref: ImageRef, media_type: str, body: bytes, platform: str) -> dict[str, Any]:
    """The parsed manifest, after its bytes were checked against the pin; an index is refused with the
    digest of ``platform``'s manifest to pin instead (the mirror copies one platform, not all of them)."""
    got = "sha256:" + hashlib.sha256(body).hexdigest()
    if got != ref.digest:
        raise MirrorError(f"{ref.registry}/{ref.repository} sent a manifest whose sha256 is {got}, not the pinned "
                          f"{ref.digest}; the registry or a proxy on the way altered it: do not use it.")
    manifest = json.loads(body)
    kind = media_type.split(";")[0].strip() or str(manifest.get("mediaType", ""))
    if kind in INDEX_TYPES or "manifests" in manifest:
        choices = {platform_of(m): m.get("digest") for m in manifest.get("manifests") or []}
        if platform in choices:
            raise MirrorError(f"{ref} is a multi-platform index; the nodes run {platform}: pin that platform's "
                              f"manifest instead, {ref.registry}/{ref.repository}@{choices[platform]}.")
        raise MirrorError(f"{ref} is a multi-platform index without {platform} (it has "
                          f"{', '.join(sorted(choices)) or 'nothing'}); pin an image built for {platform}.")
    if kind not in MANIFEST_TYPES:
        raise MirrorError(f"{ref} has a manifest of type '{kind}', which the mirror does not copy "
                          "(OCI or Docker schema 2 only).")
    return manifest


def _upload(dst: RegistryClient, repository: str, src: http.client.HTTPResponse, size: int, digest: str,
            progress: Callable[[str], None] | None) -> None:
    """Stream one blob from the upstream response into the mirror, hashing on the way."""
    res = dst.request("POST", f"/v2/{repository}/blobs/uploads/", {"Content-Length": "0"}, ok=(202,))
    res.read()
    location = res.getheader("Location") or ""
    loc = urllib.parse.urlsplit(location)
    path = loc.path + (("?" + loc.query) if loc.query else "")
    conn = dst._conn(dst.scheme, dst.host)
    conn.putrequest("PATCH", path)
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    if dst.auth:
        conn.putheader("Authorization", dst.auth)
    conn.endheaders()
    sha = hashlib.sha256()
    sent, last = 0, time.monotonic()
    while sent < size:
        chunk = src.read(min(CHUNK, size - sent))
        if not chunk:
            raise MirrorError(f"upstream closed {digest} after {sent} of {size} bytes; run again (nothing "
                              "half-copied is kept).")
        sha.update(chunk)
        conn.send(chunk)
        sent += len(chunk)
        if progress and time.monotonic() - last > 10:
            last = time.monotonic()
            progress(f"{digest[:19]}: {sent / 2**20:.0f} / {size / 2**20:.0f} MiB")
    got = "sha256:" + sha.hexdigest()
    if got != digest:
        raise MirrorError(f"upstream sent a blob whose sha256 is {got}, not {digest} as the manifest says; "
                          "it was not stored.")
    res = conn.getresponse()
    res.read()
    if res.status != 202:
        raise MirrorError(f"the mirror refused the upload of {digest} ({res.status}).")
    location = res.getheader("Location") or location
    loc = urllib.parse.urlsplit(location)
    query = (loc.query + "&" if loc.query else "") + urllib.parse.urlencode({"digest": digest})
    res = dst.request("PUT", f"{loc.path}?{query}", {"Content-Length": "0"}, ok=(201,))
    res.read()


def copy_image(ref: str, mirror: str, *, platform: str = "linux/arm64", upstream_insecure: bool = False,
               mirror_insecure: bool = True, username: str = "", password: str = "", check: bool = False,
               progress: Callable[[str], None] | None = None,
               clients: tuple[RegistryClient, RegistryClient] | None = None) -> CopyResult:
    """Copy ``ref`` (pinned by digest) into ``mirror`` once; nothing is fetched when the mirror holds it."""
    t0 = time.monotonic()
    src_ref = parse_ref(ref)
    target = mirror_ref(ref, mirror)
    repository = mirror_repository(src_ref)
    src, dst = clients or (RegistryClient(src_ref.registry, upstream_insecure, username, password),
                           RegistryClient(mirror, mirror_insecure))
    if dst.exists("manifests", repository, src_ref.digest):
        return CopyResult(ref, target, False, [], 0, time.monotonic() - t0)
    res = src.request("GET", f"/v2/{src_ref.repository}/manifests/{src_ref.digest}", {"Accept": ACCEPT})
    body = res.read()
    media_type = res.getheader("Content-Type") or ""
    manifest = check_manifest(src_ref, media_type, body, platform)
    descriptors = [manifest["config"]] + list(manifest.get("layers") or [])
    blobs: list[dict[str, Any]] = []
    copied = 0
    for desc in descriptors:
        digest, size = str(desc["digest"]), int(desc["size"])
        if desc.get("urls"):
            blobs.append({"digest": digest, "size": size, "action": "foreign (not copied)"})
            continue
        if dst.exists("blobs", repository, digest):
            blobs.append({"digest": digest, "size": size, "action": "present"})
            continue
        blobs.append({"digest": digest, "size": size, "action": "copy"})
        if check:
            continue
        if progress:
            progress(f"copying {digest[:19]} ({size / 2**20:.0f} MiB) from {src_ref.registry}")
        stream = src.request("GET", f"/v2/{src_ref.repository}/blobs/{digest}")
        _upload(dst, repository, stream, size, digest, progress)
        copied += size
    if not check:
        kind = media_type.split(";")[0].strip() or str(manifest.get("mediaType"))
        res = dst.request("PUT", f"/v2/{repository}/manifests/{src_ref.digest}",
                          {"Content-Type": kind}, body=body, ok=(201,))
        res.read()
        stored = res.getheader("Docker-Content-Digest")
        if stored and stored != src_ref.digest:
            raise MirrorError(f"the mirror stored the manifest as {stored}, not {src_ref.digest}.")
    return CopyResult(ref, target, True, blobs, copied, time.monotonic() - t0)
