"""module_utils/switch_state.py: when the switch role may skip a write, and the backup retention."""
from __future__ import annotations

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.switch_state import (
    backups_beyond,
    compare,
    differs,
    export_name,
    export_offsets,
    exports_beyond,
    normalise,
)

# /interface/ethernet rows as librouteros returns them (bools and ints already converted).
ETHERNET = [
    {".id": "*1", "name": "qsfp56-dd-1-1", "default-name": "qsfp56-dd-1-1", "l2mtu": 9216, "mtu": 9000,
     "auto-negotiation": False, "fec-mode": "fec91", "speed": "200G-baseCR4", "disabled": False},
    {".id": "*2", "name": "qsfp56-dd-1-5", "default-name": "qsfp56-dd-1-5", "l2mtu": 1584, "mtu": 1500,
     "auto-negotiation": True, "disabled": False},
]


@pytest.mark.parametrize(("value", "text"), [
    (True, "true"), (False, "false"), ("yes", "true"), ("no", "false"), ("true", "true"),
    (9216, "9216"), ("9216", "9216"), (None, ""), ("none", "none"), ("200G-baseCR4", "200G-baseCR4"),
])
def test_normalise(value, text):
    assert normalise(value) == text


def test_nothing_to_write_when_every_property_is_set():
    assert differs(ETHERNET, [{"default-name": "qsfp56-dd-1-1", "l2mtu": 9216}], "default-name") is False
    assert differs(ETHERNET, [{"default-name": "qsfp56-dd-1-1", "mtu": "9000", "auto-negotiation": "no",
                               "fec-mode": "fec91"}], "default-name") is False


def test_a_different_value_is_a_write():
    assert differs(ETHERNET, [{"default-name": "qsfp56-dd-1-5", "l2mtu": 9216}], "default-name") is True
    assert differs(ETHERNET, [{"default-name": "qsfp56-dd-1-5", "disabled": True}], "default-name") is True


def test_what_cannot_be_proven_equal_is_a_write():
    # no such entry, a property the switch did not print, two candidates, no key in the data, no rows
    assert differs(ETHERNET, [{"default-name": "qsfp56-dd-2-1", "l2mtu": 9216}], "default-name") is True
    assert differs(ETHERNET, [{"default-name": "qsfp56-dd-1-5", "fec-mode": "auto"}], "default-name") is True
    assert differs(ETHERNET + [dict(ETHERNET[0], **{".id": "*9"})], [{"default-name": "qsfp56-dd-1-1"}],
                   "default-name") is True
    assert differs(ETHERNET, [{"l2mtu": 9216}], "default-name") is True
    assert differs(None, [{"default-name": "qsfp56-dd-1-1"}], "default-name") is True
    assert differs("rows", [{"a": 1}]) is True
    assert differs(ETHERNET, ["not a dict"], "default-name") is True


def test_single_entry_paths_need_exactly_one_row():
    assert differs([{"allowed-interface-list": "none"}], [{"allowed-interface-list": "none"}]) is False
    assert differs([{"allowed-interface-list": "all"}], [{"allowed-interface-list": "none"}]) is True
    assert differs([], [{"enabled": False}]) is True
    assert differs([{"enabled": False}, {"enabled": False}], [{"enabled": False}]) is True
    assert differs([{"enabled": False}], {"enabled": "no"}) is False


def test_several_keys_and_empty_data():
    rows = [{".id": "*1", "address": "192.168.1.2/24", "interface": "ether1", "network": "192.168.1.0"}]
    assert differs(rows, [{"address": "192.168.1.2/24", "interface": "ether1"}], ["address", "interface"]) is False
    assert differs(rows, [{"address": "192.168.1.2/24", "interface": "ether2"}], ["address", "interface"]) is True
    assert differs(rows, [], "name") is False


def test_find_and_modify_shape():
    # api_find_and_modify's find merged with its values: the QoS queues by traffic class
    queues = [{".id": "*3", "traffic-class": 3, "schedule": "high-priority-group", "weight": 1, "ecn": True},
              {".id": "*6", "traffic-class": 6, "schedule": "strict-priority"}]
    want = [{"traffic-class": 3, "schedule": "high-priority-group", "weight": 1, "ecn": True}]
    assert differs(queues, want, "traffic-class") is False
    assert differs(queues, [{"traffic-class": 6, "schedule": "high-priority-group"}], "traffic-class") is True


def test_compare_names_each_set_of_entries():
    rows = {"interface ethernet": ETHERNET, "tool mac-server": [{"allowed-interface-list": "none"}]}
    specs = [{"name": "l2mtu", "path": "interface ethernet", "keys": "default-name",
              "data": [{"default-name": "qsfp56-dd-1-1", "l2mtu": 9216}]},
             {"name": "unused", "path": "interface ethernet", "keys": "default-name",
              "data": [{"default-name": "qsfp56-dd-1-5", "disabled": True}]},
             {"name": "mac_telnet", "path": "tool mac-server", "keys": [], "data": [{"allowed-interface-list": "none"}]},
             {"name": "not read", "path": "ip service", "keys": "name", "data": [{"name": "ssh"}]}]
    assert compare(rows, specs) == {"l2mtu": False, "unused": True, "mac_telnet": False, "not read": True}
    with pytest.raises(ValueError):
        compare(rows, [{"path": "user", "data": []}])


def test_export_offsets():
    assert export_offsets(0) == [0]
    assert export_offsets("100") == [0]
    assert export_offsets(32768) == [0]
    assert export_offsets(32769) == [0, 32768]
    assert export_offsets(None) == [0]


def test_backups_beyond_keeps_the_newest_and_ignores_other_files():
    files = [{".id": "*1", "name": "gb10-backup-20260102T000000Z.backup"},
             {".id": "*2", "name": "gb10-backup-20260101T000000Z.backup"},
             {".id": "*3", "name": "flash/gb10-backup-20251231T000000Z.backup"},
             {".id": "*4", "name": "gb10-backup-20260101T000000Z.rsc"},
             {".id": "*5", "name": "mine.backup"},
             {".id": "*6"}]
    # sorted by name as the role always did (a folder prefix sorts first)
    assert [f[".id"] for f in backups_beyond(files, 2)] == ["*3"]
    assert [f[".id"] for f in backups_beyond(files, 1)] == ["*3", "*2"]
    assert backups_beyond(files, 3) == []
    with pytest.raises(ValueError):
        backups_beyond(files, 0)


def test_exports_on_the_controller():
    assert export_name("crs804", "gb10-backup-20260101T000000Z") == "crs804-20260101T000000Z.rsc"
    names = ["crs804-20260102T000000Z.rsc", "crs804-20260101T000000Z.rsc", "crs804-20260103T000000Z.rsc",
             "crs804b-20260101T000000Z.rsc", "crs804-notes.rsc", "crs804-20260101T000000Z.rsc.bak"]
    assert exports_beyond(names, "crs804", 2) == ["crs804-20260101T000000Z.rsc"]
    assert exports_beyond(names, "crs804", 5) == []
    assert exports_beyond(["a.b-20260101T000000Z.rsc", "axb-20260101T000000Z.rsc"], "a.b", 1) == []
    with pytest.raises(ValueError):
        exports_beyond(names, "crs804", 0)
