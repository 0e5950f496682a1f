"""The RouterOS API simulator (lab/routeros_sim): wire encoding, queries, and librouteros round trips."""
from __future__ import annotations

import socket
import ssl
import threading
import time

import librouteros
import pytest
from librouteros.exceptions import TrapError
from librouteros.query import Key

from lab.routeros_sim import Device, Simulator
from lab.routeros_sim.protocol import (
    ProtocolError,
    decode_length,
    decode_sentences,
    encode_length,
    encode_sentence,
    length_prefix_size,
)
from lab.routeros_sim.tls import make_self_signed

# ------------------------------------------------------------------------------- wire encoding

@pytest.mark.parametrize("length,encoded", [
    (0, b"\x00"), (0x7F, b"\x7f"), (0x80, b"\x80\x80"), (0x3FFF, b"\xbf\xff"),
    (0x4000, b"\xc0\x40\x00"), (0x1FFFFF, b"\xdf\xff\xff"), (0x200000, b"\xe0\x20\x00\x00"),
    (0xFFFFFFF, b"\xef\xff\xff\xff"), (0x10000000, b"\xf0\x10\x00\x00\x00"),
])
def test_length_encoding_matches_the_routeros_table(length, encoded):
    assert encode_length(length) == encoded
    assert length_prefix_size(encoded[0]) == len(encoded)
    assert decode_length(encoded) == length


def test_length_encoding_agrees_with_librouteros():
    from librouteros.protocol import encode_length as lib_encode
    for length in (0, 1, 127, 128, 200, 16383, 16384, 2097151, 2097152, 268435455):
        assert encode_length(length) == lib_encode(length)


def test_reserved_control_byte_is_rejected():
    with pytest.raises(ProtocolError):
        length_prefix_size(0xF8)


def test_sentences_split_across_reads():
    data = encode_sentence(["/login", "=name=admin", "=password=" + "x" * 300]) + encode_sentence(["/quit"])
    sentences, rest = decode_sentences(data[:10])
    assert sentences == [] and rest == data[:10]
    sentences, rest = decode_sentences(data)
    assert sentences == [["/login", "=name=admin", "=password=" + "x" * 300], ["/quit"]]
    assert rest == b""
    sentences, rest = decode_sentences(data[:-3])
    assert sentences == [["/login", "=name=admin", "=password=" + "x" * 300]]
    assert rest == encode_sentence(["/quit"])[:-3]


# ------------------------------------------------------------------------------- server fixtures

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("cert"))


def _start(seed=None, cert_pair=None, **kw):
    seed = dict(seed or {})
    seed.setdefault("users", {"admin": "secret"})
    device = Device(seed, **kw)
    if cert_pair:
        sim = Simulator(device, "127.0.0.1", 0, str(cert_pair[0]), str(cert_pair[1]))
    else:
        sim = Simulator(device, "127.0.0.1", 0)
    return sim.start()


def _connect(sim, cert_pair=None, password="secret"):
    kwargs = {}
    if cert_pair:
        ctx = ssl.create_default_context(cafile=str(cert_pair[0]))
        ctx.check_hostname = False
        kwargs["ssl_wrapper"] = ctx.wrap_socket
    return librouteros.connect(username="admin", password=password, host="127.0.0.1", port=sim.port,
                               timeout=5, **kwargs)


@pytest.fixture()
def sim(cert):
    server = _start({"version": "7.22"}, cert)
    yield server
    server.shutdown()


@pytest.fixture()
def api(sim, cert):
    conn = _connect(sim, cert)
    yield conn
    conn.close()


# ------------------------------------------------------------------------------- round trips

def test_tls_login_and_print_with_proplist_and_query(api):
    eth = api.path("interface", "ethernet")
    rows = list(eth.select(Key("name"), Key("l2mtu")).where(Key("name") == "qsfp56-dd-2-5"))
    assert rows == [{"name": "qsfp56-dd-2-5", "l2mtu": 1584}]
    names = [r["name"] for r in eth]
    assert names[:2] == ["qsfp56-dd-1-1", "qsfp56-dd-1-2"] and "ether2" in names and len(names) == 34


def test_wrong_password_is_a_trap(sim, cert):
    with pytest.raises(TrapError, match="invalid user name or password"):
        _connect(sim, cert, password="nope")


def test_query_operators(api):
    eth = api.path("interface", "ethernet")
    rows = list(eth.select(Key("name")).where(
        Key("name").In("qsfp56-dd-1-1", "qsfp56-dd-4-8", "ether1")))
    assert sorted(r["name"] for r in rows) == ["ether1", "qsfp56-dd-1-1", "qsfp56-dd-4-8"]
    not_qsfp = list(api.rawCmd("/interface/ethernet/print", "=.proplist=name", "?switch", "?#!"))
    assert [r["name"] for r in not_qsfp] == ["ether1", "ether2"]
    no_comment = list(api.rawCmd("/interface/ethernet/print", "=.proplist=name", "?-comment", "?name=ether2"))
    assert no_comment == [{"name": "ether2"}]
    # booleans compare as values, whatever the spelling
    assert len(list(api.rawCmd("/interface/ethernet/print", "?disabled=no"))) == 34
    assert len(list(api.rawCmd("/interface/ethernet/print", "?disabled=false"))) == 34


def test_l2mtu_before_mtu_and_routeros_error_texts(api):
    eth = api.path("interface", "ethernet")
    with pytest.raises(TrapError, match="^could not set mtu$"):
        eth.update(**{".id": "*1", "mtu": 9000})
    with pytest.raises(TrapError, match="out of range"):
        eth.update(**{".id": "*1", "l2mtu": 9571})
    with pytest.raises(TrapError, match="unknown parameter"):
        eth.update(**{".id": "*1", "jumbo": "yes"})
    eth.update(**{".id": "*1", "l2mtu": 9216})
    eth.update(**{".id": "*1", "mtu": 9000})
    row = next(r for r in eth if r["name"] == "qsfp56-dd-1-1")
    assert (row["l2mtu"], row["mtu"]) == (9216, 9000)


def test_bad_values_are_traps_not_crashes(api):
    eth = api.path("interface", "ethernet")
    with pytest.raises(TrapError, match="input does not match any value of auto-negotiation"):
        eth.update(numbers="ether1", **{"auto-negotiation": "perhaps"})
    with pytest.raises(TrapError, match="invalid value for argument address"):
        api.path("ip", "address").add(address="300.1.1.1/24", interface="ether1")
    with pytest.raises(TrapError, match="invalid value for argument egress-rate-queue3"):
        api.path("interface", "ethernet", "switch", "qos", "port").update(
            numbers="qsfp56-dd-1-1", **{"egress-rate-queue3": "fast"})
    assert list(api.path("system", "identity")) == [{"name": "MikroTik"}]


def test_breakout_speed_needs_enough_lanes(api):
    eth = api.path("interface", "ethernet")
    eth.update(numbers="qsfp56-dd-1-5", speed="200G-baseCR4", **{"auto-negotiation": False})
    with pytest.raises(TrapError, match="not supported"):
        eth.update(numbers="qsfp56-dd-1-5", speed="400G-baseCR8")
    with pytest.raises(TrapError, match="input does not match any value of fec-mode"):
        eth.update(numbers="qsfp56-dd-1-5", **{"fec-mode": "rs"})


def test_rates_are_echoed_in_routeros_form_and_capped_before_7_24(api):
    port = api.path("interface", "ethernet", "switch", "qos", "port")
    with pytest.raises(TrapError, match="max bit rate is 100G"):
        port.update(numbers="qsfp56-dd-1-1", **{"egress-rate-queue3": "200G"})
    port.update(numbers="qsfp56-dd-1-1", **{"egress-rate-queue3": "100G", "pfc": "disabled"})
    row = list(port.select(Key("egress-rate-queue3")).where(Key("name") == "qsfp56-dd-1-1"))[0]
    assert row["egress-rate-queue3"] == "100.0Gbps"
    with pytest.raises(TrapError, match="input does not match any value of pfc"):
        port.update(numbers="qsfp56-dd-1-1", pfc="pfc-tc3")


def test_version_gated_properties(cert):
    old = _start({"version": "7.22"}, cert)
    new = _start({"version": "7.25"}, cert)
    try:
        api_old, api_new = _connect(old, cert), _connect(new, cert)
        with pytest.raises(TrapError, match="unknown parameter lossless-traffic-class"):
            api_old.path("interface", "ethernet", "switch", "qos", "settings").update(
                **{"lossless-traffic-class": "3"})
        api_new.path("interface", "ethernet", "switch", "qos", "settings").update(**{"lossless-traffic-class": "3"})
        assert list(api_new.path("system", "resource"))[0]["version"] == "7.25 (stable)"
        port = api_new.path("interface", "ethernet", "switch", "qos", "port")
        port.update(numbers="qsfp56-dd-1-1", **{"egress-rate-queue3": "200G"})
        api_old.close()
        api_new.close()
    finally:
        old.shutdown()
        new.shutdown()


def test_add_remove_and_unique_names(api):
    pfc = api.path("interface", "ethernet", "switch", "qos", "priority-flow-control")
    ident = pfc.add(name="pfc-tc3", **{"traffic-class": 3, "rx": True, "tx": True})
    assert ident.startswith("*")
    with pytest.raises(TrapError, match="already exists"):
        pfc.add(name="pfc-tc3")
    assert list(pfc) == [{".id": ident, "name": "pfc-tc3", "traffic-class": 3, "rx": True, "tx": True}]
    pfc.remove(ident)
    assert list(pfc) == []


def test_bridge_port_hw_offload_only_on_the_first_bridge(api):
    bridges = api.path("interface", "bridge")
    ports = api.path("interface", "bridge", "port")
    bridges.add(name="first")
    bridges.add(name="second")
    ports.add(interface="qsfp56-dd-1-1", bridge="first")
    ports.add(interface="qsfp56-dd-2-1", bridge="second")
    ports.add(interface="ether1", bridge="second")
    offload = {r["interface"]: r["hw-offload"] for r in ports}
    assert offload == {"qsfp56-dd-1-1": True, "qsfp56-dd-2-1": False, "ether1": False}
    with pytest.raises(TrapError, match="already added"):
        ports.add(interface="qsfp56-dd-1-1", bridge="second")


def test_monitor_once_and_seeded_port_conditions(cert):
    server = _start({"version": "7.25", "ports": {"qsfp56-dd-2-1": "module-not-initialised",
                                                  "qsfp56-dd-3-1": "no-module"}}, cert)
    try:
        conn = _connect(server, cert)
        eth = conn.path("interface", "ethernet")
        rows = list(eth("monitor", numbers="qsfp56-dd-1-1,qsfp56-dd-2-1,qsfp56-dd-3-1", once=""))
        by = {r["name"]: r for r in rows}
        assert by["qsfp56-dd-1-1"]["status"] == "link-ok" and by["qsfp56-dd-1-1"]["rate"] == "200Gbps"
        assert by["qsfp56-dd-2-1"]["status"] == "no-link"
        assert by["qsfp56-dd-2-1"]["sfp-module-present"] is True
        assert by["qsfp56-dd-2-1"]["sfp-cmis-module-state"] == "module-low-power"
        assert by["qsfp56-dd-3-1"]["sfp-module-present"] is False
        conn.close()
    finally:
        server.shutdown()


def test_monitor_without_once_streams_until_cancel(api):
    # librouteros does not parse tagged replies (".tag=7" has no leading "="), so read raw words.
    def read():
        word, words = api.protocol.readSentence()
        attrs = dict(w[1:].split("=", 1) if w.startswith("=") else w.split("=", 1) for w in words)
        return word, attrs

    api.protocol.writeSentence("/interface/ethernet/monitor", "=numbers=ether1", ".tag=7")
    word, attrs = read()
    assert word == "!re" and attrs[".tag"] == "7" and attrs["name"] == "ether1"
    api.protocol.writeSentence("/cancel", "=tag=7", ".tag=8")
    seen = []
    # The cancel's own "!done" (tag 8) and the monitor's end (tag 7) may come in either order; on a
    # loaded machine the monitor can even send another "!re" first. Read until both have ended.
    deadline = time.time() + 30
    while time.time() < deadline and not {("!done", "7"), ("!done", "8")} <= set(seen):
        word, attrs = read()
        seen.append((word, attrs.get(".tag")))
        if word == "!trap":
            assert attrs["message"] == "interrupted"
    assert ("!done", "8") in seen and ("!trap", "7") in seen and ("!done", "7") in seen


def test_empty_reply_word_on_new_versions(cert):
    server = _start({"version": "7.25"}, cert)
    try:
        conn = _connect(server, cert)
        conn.protocol.writeSentence("/ip/address/print")
        assert conn.protocol.readSentence()[0] == "!empty"
        assert conn.protocol.readSentence()[0] == "!done"
        conn.close()
    finally:
        server.shutdown()


def test_unknown_menu_and_command(api):
    with pytest.raises(TrapError, match="no such command prefix"):
        list(api("/interface/nonsense/print"))
    with pytest.raises(TrapError, match="no such command"):
        list(api("/interface/bridge/frobnicate"))


def test_export_to_file_and_read_back(api):
    api.path("interface", "ethernet").update(numbers="qsfp56-dd-1-1", l2mtu=9216)
    assert list(api("/export", file="backup")) == []
    files = list(api.path("file"))
    assert [f["name"] for f in files] == ["backup.rsc"]
    data = list(api.path("file")("read", file="backup.rsc", offset=0, **{"chunk-size": 32768}))[0]["data"]
    assert "by RouterOS 7.22" in data
    assert "set [ find default-name=qsfp56-dd-1-1 ] l2mtu=9216" in data
    api.path("file").remove(files[0][".id"])
    assert list(api.path("file")) == []


def test_service_address_is_enforced_on_new_connections(sim, cert, api):
    services = api.path("ip", "service")
    api_ssl = next(r for r in services if r["name"] == "api-ssl")
    services.update(**{".id": api_ssl[".id"], "address": "10.0.0.0/8"})
    assert next(r for r in services if r["name"] == "api-ssl")["address"] == "10.0.0.0/8"
    with pytest.raises(Exception):  # noqa: B017  (refused at once: a reset, a closed socket or a TLS error)
        _connect(sim, cert)
    services.update(**{".id": api_ssl[".id"], "address": "127.0.0.1,10.0.0.0/8"})
    assert next(r for r in services if r["name"] == "api-ssl")["address"] == "127.0.0.1/32,10.0.0.0/8"
    _connect(sim, cert).close()


def test_plain_api_and_state_survives_restart(tmp_path):
    state = tmp_path / "state.json"
    server = _start({}, state_file=state)
    conn = _connect(server)
    conn.path("interface", "bridge").add(name="gb10-fabric")
    conn.close()
    server.shutdown()
    again = _start({}, state_file=state)
    try:
        conn = _connect(again)
        assert [b["name"] for b in conn.path("interface", "bridge")] == ["gb10-fabric"]
        conn.close()
    finally:
        again.shutdown()


def test_phy_file_is_reread_live(tmp_path, cert):
    phy = tmp_path / "phy.json"
    phy.write_text('{"ports": {}}')
    server = _start({}, cert, phy_file=phy)
    try:
        conn = _connect(server, cert)
        eth = conn.path("interface", "ethernet")
        assert list(eth("monitor", numbers="qsfp56-dd-2-1", once=""))[0]["status"] == "link-ok"
        time.sleep(0.05)
        phy.write_text('{"ports": {"qsfp56-dd-2-1": "module-not-initialised"}}')
        import os
        os.utime(phy, (time.time() + 5, time.time() + 5))
        assert list(eth("monitor", numbers="qsfp56-dd-2-1", once=""))[0]["status"] == "no-link"
        conn.close()
    finally:
        server.shutdown()


def test_garbage_does_not_kill_the_server(sim, cert):
    raw = socket.create_connection(("127.0.0.1", sim.port), timeout=2)
    raw.sendall(b"\xff\xff\xff\xff")
    raw.close()
    conn = _connect(sim, cert)
    assert list(conn.path("system", "identity")) == [{"name": "MikroTik"}]
    conn.close()


def test_concurrent_clients(sim, cert):
    errors = []

    def worker():
        try:
            conn = _connect(sim, cert)
            for _ in range(5):
                list(conn.path("interface", "ethernet"))
            conn.close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ------------------------------------------------------------------------------- certificates (lab PKI)

def _verify(port, cafile):
    """A handshake as community.routeros makes it with validate_certs and ca_path; None or the verify error."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    try:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message


def test_lab_pki_ca_signed_self_signed_and_impostor(tmp_path):
    import hashlib

    from lab.routeros_sim.tls import make_lab_pki

    real = make_lab_pki(tmp_path / "real")
    assert not real.self_signed and real.trust.read_bytes() != real.server_cert.read_bytes()
    der = ssl.PEM_cert_to_DER_cert(real.server_cert.read_text())
    assert real.fingerprint.replace(":", "") == hashlib.sha256(der).hexdigest().upper()
    assert (tmp_path / "real" / "server.sha256").read_text().strip() == real.fingerprint
    assert oct((tmp_path / "real" / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert make_lab_pki(tmp_path / "real").fingerprint == real.fingerprint  # made once
    impostor = make_lab_pki(tmp_path / "impostor")  # same names, other keys
    assert impostor.fingerprint != real.fingerprint
    selfsigned = make_lab_pki(tmp_path / "self", self_signed=True)
    assert selfsigned.trust.read_bytes() == selfsigned.server_cert.read_bytes()
    servers = {}
    for name, pki in (("real", real), ("impostor", impostor), ("self", selfsigned)):
        servers[name] = Simulator(Device({"users": {"admin": "secret"}}), "127.0.0.1", 0,
                                  str(pki.server_cert), str(pki.server_key)).start()
    try:
        assert _verify(servers["real"].port, real.trust) is None
        assert _verify(servers["impostor"].port, real.trust) == "unable to get local issuer certificate"
        assert _verify(servers["self"].port, selfsigned.trust) is None
        assert _verify(servers["self"].port, real.trust) == "self-signed certificate"
    finally:
        for server in servers.values():
            server.shutdown()
    # asking for the other kind makes new certificates
    again = make_lab_pki(tmp_path / "real", self_signed=True)
    assert again.self_signed and again.fingerprint != real.fingerprint
    assert not (tmp_path / "real" / "ca-key.pem").exists()


# ------------------------------------------------------------------------------- users

def _login(sim, cert, user, password):
    ctx = ssl.create_default_context(cafile=str(cert[0]))
    ctx.check_hostname = False
    return librouteros.connect(username=user, password=password, host="127.0.0.1", port=sim.port, timeout=5,
                               ssl_wrapper=ctx.wrap_socket)


def test_users_disable_rename_and_hidden_password(cert):
    server = _start({"version": "7.25", "users": {"admin": "factory", "gb10": {"password": "pw", "group": "full"},
                                                  "watcher": {"password": "ro", "group": "read"}}}, cert)
    try:
        api = _login(server, cert, "gb10", "pw")
        users = {u["name"]: u for u in api.path("user")}
        assert set(users) == {"admin", "gb10", "watcher"}
        assert users["watcher"]["group"] == "read" and users["admin"]["disabled"] is False
        assert all("password" not in u for u in users.values())
        assert users["gb10"]["last-logged-in"]
        assert {g["name"] for g in api.path("user", "group")} >= {"read", "write", "full"}
        _login(server, cert, "admin", "factory").close()
        api.path("user").update(**{".id": users["admin"][".id"], "disabled": True})
        with pytest.raises(TrapError, match="invalid user name or password"):
            _login(server, cert, "admin", "factory")
        api.path("user").update(**{".id": users["admin"][".id"], "disabled": False, "name": "old-admin"})
        with pytest.raises(TrapError, match="invalid user name or password"):
            _login(server, cert, "admin", "factory")
        _login(server, cert, "old-admin", "factory").close()
        with pytest.raises(TrapError, match="already exists"):
            api.path("user").update(**{".id": users["admin"][".id"], "name": "gb10"})
        with pytest.raises(TrapError, match="input does not match any value of group"):
            api.path("user").add(name="x", group="root", password="y")
        api.path("user").update(**{".id": users["watcher"][".id"], "address": "10.0.0.0/8"})
        with pytest.raises(TrapError, match="invalid user name or password"):
            _login(server, cert, "watcher", "ro")  # only from 10.0.0.0/8
        assert "/user" not in (server.device.export())  # users are not exported (passwords)
        api.close()
    finally:
        server.shutdown()


# ------------------------------------------------------------------------------- management menus

def test_mac_server_discovery_and_bandwidth_server(api):
    mac = api.path("tool", "mac-server")
    winbox = api.path("tool", "mac-server", "mac-winbox")
    ping = api.path("tool", "mac-server", "ping")
    discovery = api.path("ip", "neighbor", "discovery-settings")
    btest = api.path("tool", "bandwidth-server")
    assert list(mac) == [{"allowed-interface-list": "all"}] and list(winbox) == [{"allowed-interface-list": "all"}]
    assert list(ping) == [{"enabled": True}]
    assert list(btest) == [{"enabled": True, "authenticate": True, "allocate-udp-ports-from": 2000,
                            "max-sessions": 100}]
    settings = list(discovery)[0]
    assert settings["discover-interface-list"] == "!dynamic" and settings["protocol"] == "cdp,lldp,mndp"
    assert settings["mode"] == "tx-and-rx"  # 7.7+
    mac.update(**{"allowed-interface-list": "none"})
    winbox.update(**{"allowed-interface-list": "none"})
    ping.update(enabled=False)
    discovery.update(**{"discover-interface-list": "none"})
    btest.update(enabled=False)
    assert list(mac) == [{"allowed-interface-list": "none"}] and list(ping) == [{"enabled": False}]
    assert list(discovery)[0]["discover-interface-list"] == "none" and list(btest)[0]["enabled"] is False
    with pytest.raises(TrapError, match="input does not match any value of allowed-interface-list"):
        mac.update(**{"allowed-interface-list": "mgmt"})
    api.path("interface", "list").add(name="mgmt")
    mac.update(**{"allowed-interface-list": "mgmt"})
    discovery.update(**{"discover-interface-list": "!mgmt", "protocol": "lldp"})
    with pytest.raises(TrapError, match="input does not match any value of protocol"):
        discovery.update(protocol="lldp,gopher")
    none = next(r for r in api.path("interface", "list") if r["name"] == "none")
    with pytest.raises(TrapError, match="failure: can not remove builtin entry"):
        api.path("interface", "list").remove(none[".id"])
    assert list(api("/export", file="hardening")) == []
    data = list(api.path("file")("read", file="hardening.rsc", offset=0, **{"chunk-size": 32768}))[0]["data"]
    assert "/tool mac-server\nset allowed-interface-list=mgmt" in data
    assert "/tool bandwidth-server\nset enabled=false" in data
    assert "/ip neighbor discovery-settings\nset discover-interface-list=!mgmt protocol=lldp" in data


def test_discovery_fields_follow_the_version(cert):
    old = _start({"version": "7.6"}, cert)
    try:
        conn = _connect(old, cert)
        settings = list(conn.path("ip", "neighbor", "discovery-settings"))[0]
        assert "mode" not in settings and "lldp-vlan-info" not in settings
        with pytest.raises(TrapError, match="unknown parameter mode"):
            conn.path("ip", "neighbor", "discovery-settings").update(mode="rx-only")
        conn.close()
    finally:
        old.shutdown()


def test_factory_address_on_the_management_port(cert):
    server = _start({"version": "7.25", "factory_address": "192.168.88.1/24"}, cert)
    defconf = _start({"version": "7.22", "defconf": True}, cert)
    try:
        conn = _connect(server, cert)
        rows = list(conn.path("ip", "address"))
        assert [(r["address"], r["interface"], r["comment"]) for r in rows] == [("192.168.88.1/24", "ether1", "defconf")]
        conn.path("ip", "address").remove(rows[0][".id"])
        assert list(conn.path("ip", "address")) == []
        conn.close()
        conn = _connect(defconf, cert)
        ports = {p["interface"] for p in conn.path("interface", "bridge", "port")}
        assert "ether1" not in ports and "ether2" in ports and "qsfp56-dd-1-1" in ports
        assert [r["interface"] for r in conn.path("ip", "address")] == ["ether1"]
        conn.close()
    finally:
        server.shutdown()
        defconf.shutdown()


def test_disabling_the_controllers_port_cuts_new_connections(sim, cert, api):
    eth = api.path("interface", "ethernet")
    eth.update(numbers="ether2", disabled=True)
    _connect(sim, cert).close()  # the controller is cabled to ether1
    eth.update(numbers="ether1", disabled=True)
    with pytest.raises(Exception):  # noqa: B017  (refused at once: a reset, a closed socket or a TLS error)
        _connect(sim, cert)
    assert list(api.path("system", "identity"))  # the session that did it lives on
    eth.update(numbers="ether1", disabled=False)
    _connect(sim, cert).close()


def test_binary_backup_save_and_load_restores_the_configuration(sim, cert, api):
    """/system/backup/save keeps the whole configuration in <name>.backup (encrypted with the password);
    /system/backup/load puts it back whole and reboots (the session ends); files stay."""
    eth = api.path("interface", "ethernet")
    eth.update(numbers="qsfp56-dd-1-1", l2mtu=9216)
    assert list(api("/system/backup/save", name="before", password="s3cret")) == []
    files = {f["name"]: f for f in api.path("file")}
    assert files["before.backup"]["type"] == "backup" and files["before.backup"]["size"] > 100
    eth.update(numbers="qsfp56-dd-1-1", l2mtu=1584)
    api.path("system", "identity").update(name="broken")
    with pytest.raises(TrapError, match="wrong password"):
        list(api("/system/backup/load", name="before.backup", password="nope"))
    with pytest.raises(TrapError, match="no such backup file"):
        list(api("/system/backup/load", name="other", password="s3cret"))
    list(api("/system/backup/load", name="before", password="s3cret"))
    with pytest.raises((OSError, librouteros.exceptions.ConnectionClosed)):  # rebooting: the session is gone
        list(api.path("system", "identity"))
    again = _connect(sim, cert)
    try:
        assert [r["l2mtu"] for r in again.path("interface", "ethernet") if r["name"] == "qsfp56-dd-1-1"] == [9216]
        assert list(again.path("system", "identity"))[0]["name"] == "MikroTik"
        assert "before.backup" in {f["name"] for f in again.path("file")}
    finally:
        again.close()
