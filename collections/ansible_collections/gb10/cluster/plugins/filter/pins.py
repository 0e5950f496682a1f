"""Filters for pins (logic in plugins/module_utils/pins.py; docs/pinning.md).

- ``catalog | catalog_pins(pins, where)``: the catalog with the inventory's pins applied (``pins``: the
  ``gb10_pin__*`` variables; image by digest, Hugging Face commit, checkpoint size); a bad pin fails with
  one sentence.
- ``pins_dir | pin_current(model)``: the pin kept in ``<pins_dir>/<model>.yml`` ({} when there is none).
- ``model | pin_var``: the variable that holds a model's pin.
- ``catalog | pin_image(model, image_pins, image)``: the image to resolve: ``image`` (-e image=repo:tag)
  or what the entry runs now (gb10_image_pins or the catalog), as {repository, tag, digest, source, name}.
- ``'' | pin_probe_code``: the python3 code the probe runs in the image.
- ``result | pin_probe(ref)``: the probe command's result -> {python, vllm, ray, nccl, torch}.
- ``image | pin_record(model, probe, hub, probed_on)``: the pin; ``record | pin_text``: the file's text.
- ``record | pin_notes(model, entry)``: sentences for the operator (no vLLM, no Ray, another vLLM).
- ``catalog | pin_request_errors(model, pins_dir, probe_host, image, revision)``: the request's mistakes.
- ``entry | pin_hub_wanted``: whether the entry's weights come from the Hub.
- ``record | pin_changes(old)``: ``key: old -> new`` lines.
- ``catalog | pin_servable(model, record, image_pins)``: why serve.yml would still refuse the entry with the
  new pin ([] if none).
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.gb10.cluster.plugins.module_utils import pins as _P
from ansible_collections.gb10.cluster.plugins.module_utils import serving as _S


def catalog_pins(catalog: Any, pins: Any = None, where: Any = "") -> dict[str, Any]:
    try:
        return _P.apply_pins(dict(catalog or {}), _P.pins_from_vars(dict(pins or {}), str(where or _P.PINS_DIR)))
    except _P.PinError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def pin_current(pins_dir: Any, model: Any) -> dict[str, Any]:
    try:
        return _P.read_pin(str(pins_dir or ""), str(model))
    except _P.PinError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def pin_var(model: Any) -> str:
    return _P.pin_var(str(model))


def pin_image(catalog: Any, model: Any, image_pins: Any = None, image: Any = "") -> dict[str, Any]:
    name = str(model or "")
    entry = dict(catalog or {}).get(name)
    if entry is None:
        raise AnsibleFilterError(f"Unknown model '{name}' (-e model): use one of {', '.join(sorted(catalog or {}))}.")
    if image:
        repository, tag, digest = _P.split_image(str(image))
        out = {"repository": repository, "tag": tag, "digest": digest, "source": "-e image"}
    else:
        # the entry as the repository and gb10_image_pins say it, without a pin of ours (the tag is re-resolved)
        current = _S.image_for(name, entry, dict(image_pins or {}) if isinstance(image_pins, dict) else {})
        out = {k: current.get(k, "") for k in ("repository", "tag", "digest", "source")}
    out["name"] = out["repository"] + (f"@{out['digest']}" if out["digest"] else f":{out['tag']}")
    return out


def pin_probe(result: Any, ref: Any = "") -> dict[str, str]:
    result = dict(result or {})
    try:
        return _P.parse_probe(int(result.get("rc", 1)), str(result.get("stdout", "")), str(result.get("stderr", "")),
                              str(ref or ""))
    except _P.PinError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def pin_record(image: Any, model: Any, probe: Any, hub: Any = None, probed_on: Any = "") -> dict[str, Any]:
    return _P.pin_record(str(model), dict(image), dict(probe or {}), dict(hub) if hub else None, str(probed_on or ""))


def pin_text(record: Any) -> str:
    return _P.pin_text(dict(record))


def pin_notes(record: Any, model: Any, entry: Any) -> list[str]:
    return _P.pin_notes(str(model), dict(entry or {}), dict(record))


def pin_request_errors(catalog: Any, model: Any, pins_dir: Any, probe_host: Any, image: Any = "",
                       revision: Any = "") -> list[str]:
    return _P.request_errors(str(model or ""), dict(catalog or {}), str(pins_dir or ""), str(probe_host or ""),
                             str(image or ""), str(revision or ""))


def pin_hub_wanted(entry: Any) -> bool:
    return _P.hub_wanted(dict(entry or {}))


def pin_changes(record: Any, old: Any) -> list[str]:
    return _P.pin_changes(dict(old or {}), dict(record))


def pin_servable(catalog: Any, model: Any, record: Any, image_pins: Any = None) -> list[str]:
    """Why serve.yml would still refuse the entry's image or revision with ``record`` pinned ([] when it accepts)."""
    name = str(model)
    entry = _P.apply_pins(dict(catalog or {}), {name: dict(record)})[name]
    image = _S.image_for(name, entry, dict(image_pins or {}) if isinstance(image_pins, dict) else {})
    errors = _S.image_errors(name, image)
    if _P.hub_wanted(entry) and not _P.HEX40_RE.match(str(entry.get("hf_revision") or "")):
        errors.append(f"{name}: gb10_catalog['{name}'].hf_revision is empty.")
    return errors


def pin_probe_code(_: Any = "") -> str:
    """The python3 code run in the image (``PROBE``)."""
    return _P.PROBE


class FilterModule:
    """Pin filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "catalog_pins": catalog_pins,
            "pin_current": pin_current,
            "pin_var": pin_var,
            "pin_image": pin_image,
            "pin_probe": pin_probe,
            "pin_record": pin_record,
            "pin_text": pin_text,
            "pin_notes": pin_notes,
            "pin_request_errors": pin_request_errors,
            "pin_hub_wanted": pin_hub_wanted,
            "pin_changes": pin_changes,
            "pin_servable": pin_servable,
            "pin_probe_code": pin_probe_code,
        }
