"""Filters for the rack's registry mirror (logic in plugins/module_utils/registry_mirror.py).

- ``ref | mirror_ref(mirror)``: what the nodes pull, ``<mirror>/<registry>/<repository>@<digest>``
  (``ref`` itself when ``mirror`` is empty).
- ``ref | image_registry``: the registry a reference pulls from (``docker.io`` for Docker Hub names).
- ``gb10_image_pins | pinned_refs``: ``repository@digest`` of every pin that has a digest (what site.yml
  copies into the mirror).
- ``mirror | registry_mirror_errors(images)``: what is wrong with the mirror settings, one sentence each.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.gb10.cluster.plugins.module_utils import registry_mirror as _M


def mirror_ref(ref: Any, mirror: Any = "") -> str:
    try:
        return _M.mirror_ref(str(ref), str(mirror or ""))
    except _M.MirrorError as err:
        raise AnsibleFilterError(str(err)) from err


def image_registry(ref: Any) -> str:
    try:
        return _M.parse_ref(str(ref)).registry
    except _M.MirrorError as err:
        raise AnsibleFilterError(str(err)) from err


def pinned_refs(pins: Any) -> list[str]:
    return _M.pinned_refs(pins if isinstance(pins, dict) else {})


def registry_mirror_errors(mirror: Any, images: Any = None) -> list[str]:
    return _M.mirror_errors(mirror, [] if images is None else images)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mirror_ref": mirror_ref, "registry_mirror_errors": registry_mirror_errors,
                "image_registry": image_registry, "pinned_refs": pinned_refs}
