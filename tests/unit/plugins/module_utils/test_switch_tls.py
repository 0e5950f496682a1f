"""switch_tls: how the role recognises the switch (CA pin, fingerprint pin, explicit opt-out), against the simulator."""
from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils import switch_tls
from ansible_collections.gb10.cluster.plugins.module_utils.switch_tls import Refused, Settings
from lab.routeros_sim import Device, Simulator
from lab.routeros_sim.tls import make_lab_pki

FP = "AB:" * 31 + "AB"


# ------------------------------------------------------------------------------- fingerprints

@pytest.mark.parametrize("raw", [
    FP, FP.lower(), FP.replace(":", ""), "sha256 Fingerprint=" + FP, "SHA256:" + FP, FP.replace(":", " "),
    "  " + FP.replace(":", "-") + "\n",
])
def test_fingerprint_forms(raw):
    assert switch_tls.normalise_fingerprint(raw) == FP


@pytest.mark.parametrize("raw", ["", "AB" * 31, "AB" * 33, "ZZ" * 32, None, 12, "md5:" + "AB" * 16])
def test_not_fingerprints(raw):
    assert switch_tls.normalise_fingerprint(raw) is None


# ------------------------------------------------------------------------------- settings

def s(**kw) -> Settings:
    base = {"host": "crs804", "address": "192.168.1.2"}
    base.update(kw)
    return Settings(**base)


@pytest.mark.parametrize("settings,fragments", [
    (s(), ["crs804: nothing tells Ansible how to recognise the switch", "switch_api_ca_path",
           "switch_api_cert_sha256", "switch_api_allow_unverified: true"]),
    (s(cert_sha256="abc"), ["switch_api_cert_sha256 is 'abc', not a SHA-256 fingerprint"]),
    (s(ca_path="ca.pem"), ["switch_api_ca_path is 'ca.pem', a relative path"]),
    (s(ca_path="/nonexistent/ca.pem"), ["switch_api_ca_path /nonexistent/ca.pem does not exist on this machine"]),
    (s(tls=False), ["switch_api_tls is false, which sends the API password in clear", "192.168.1.2:8729"]),
    (s(tls=False, cert_sha256=FP), ["switch_api_tls is false, so the certificate pinned", "never checked"]),
    (s(force_no_cert=True), ["switch_api_force_no_cert (anonymous TLS) cannot tell the switch from an impostor"]),
    (s(force_no_cert=True, cert_sha256=FP, allow_unverified=True), ["cannot be checked against"]),
    (s(cert_sha256=FP, removed={"switch_api_validate_certs": False}),
     ["switch_api_validate_certs is no longer used", "switch_api_allow_unverified: true"]),
])
def test_settings_mistakes_are_one_sentence_each(settings, fragments):
    errors = switch_tls.settings_errors(settings)
    assert len(errors) == 1, errors
    for fragment in fragments:
        assert fragment in errors[0]


def test_ca_file_must_hold_a_certificate(tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    assert "holds no PEM certificate" in switch_tls.settings_errors(s(ca_path=str(junk)))[0]


@pytest.mark.parametrize("settings,how", [
    (s(cert_sha256=FP), "fingerprint"), (s(ca_path="/x"), "ca"), (s(ca_path="/x", cert_sha256=FP), "ca+fingerprint"),
    (s(allow_unverified=True), "unverified"), (s(tls=False, allow_unverified=True), "plain"),
    (s(force_no_cert=True, allow_unverified=True), "anonymous"),
])
def test_modes(settings, how):
    assert switch_tls.settings_errors(settings, check_files=False) == []
    assert switch_tls.mode(settings) == how


def test_settings_from_role_variables():
    got = Settings.from_vars("crs804", {"ansible_host": "10.0.0.2", "switch_api_port": "8730",
                                        "switch_api_cert_sha256": FP, "switch_api_allow_unverified": "true",
                                        "switch_api_validate_certs": True})
    assert (got.address, got.port, got.cert_sha256, got.allow_unverified) == ("10.0.0.2", 8730, FP, True)
    assert got.removed == {"switch_api_validate_certs": True}
    assert Settings.from_vars("sw", {"switch_api_host": "10.9.9.9"}).address == "10.9.9.9"


# ------------------------------------------------------------------------------- against the simulator

def _server(cert: Path, key: Path, device: Device | None = None) -> Simulator:
    device = device or Device({"version": "7.25", "users": {"admin": "secret"}})
    return Simulator(device, "127.0.0.1", 0, str(cert), str(key)).start()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return {"real": make_lab_pki(root / "real"), "impostor": make_lab_pki(root / "impostor"),
            "self": make_lab_pki(root / "self", self_signed=True),
            "self-impostor": make_lab_pki(root / "self-impostor", self_signed=True)}


@pytest.fixture()
def serve(pki):
    servers = []

    def start(name: str, device: Device | None = None) -> Simulator:
        server = _server(pki[name].server_cert, pki[name].server_key, device)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def at(server: Simulator, **kw) -> Settings:
    return s(address="127.0.0.1", port=server.port, **kw)


def test_ca_pin_accepts_the_switch_and_sends_nothing(serve, pki, tmp_path):
    device = Device({"version": "7.25", "users": {"admin": "secret"}})
    server = serve("real", device)
    result = switch_tls.preflight(at(server, ca_path=str(pki["real"].trust)), tmp_path, timeout=5, wait=5)
    assert result["mode"] == "ca" and result["validate_certs"] and result["ca_path"] == str(pki["real"].trust)
    assert result["presented"]["sha256"] == pki["real"].fingerprint
    assert result["presented"]["subject"] == "CN=crs804-sim" and result["presented"]["self_signed"] is False
    assert result["warnings"] == []
    assert all("last-logged-in" not in u for u in device.rows[("user",)])  # no login, no API word


def test_ca_pin_refuses_an_impostor_in_one_sentence(serve, pki, tmp_path):
    server = serve("impostor")
    with pytest.raises(Refused) as exc:
        switch_tls.preflight(at(server, ca_path=str(pki["real"].trust)), tmp_path, timeout=5, wait=5)
    msg = str(exc.value)
    assert msg.startswith(f"The switch crs804 at 127.0.0.1:{server.port} presented a certificate (CN=crs804-sim")
    assert f"SHA-256 {pki['impostor'].fingerprint}" in msg
    assert f"that the CA in switch_api_ca_path ({pki['real'].trust}) did not sign" in msg
    assert "this may not be your switch, so nothing was sent to it" in msg
    assert "point switch_api_ca_path at the CA that signed the new one" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")  # one sentence


def test_ca_pin_refuses_a_self_signed_stranger(serve, pki, tmp_path):
    server = serve("self")
    with pytest.raises(Refused, match="did not sign \\(self-signed certificate\\)"):
        switch_tls.preflight(at(server, ca_path=str(pki["real"].trust)), tmp_path, timeout=5, wait=5)


def test_fingerprint_pin_writes_the_certificate_the_modules_trust(serve, pki, tmp_path):
    server = serve("self")
    result = switch_tls.preflight(at(server, cert_sha256=pki["self"].fingerprint.lower()), tmp_path, timeout=5,
                                  wait=5)
    assert result["mode"] == "fingerprint" and result["validate_certs"]
    pin = Path(result["ca_path"])
    assert pin.parent == tmp_path and pin.read_text().strip() == pki["self"].server_cert.read_text().strip()
    # what community.routeros then does with it: verify every connection against exactly that certificate
    import librouteros

    ctx = switch_tls.client_context(str(pin), False)
    librouteros.connect(username="admin", password="secret", host="127.0.0.1", port=server.port,
                        ssl_wrapper=ctx.wrap_socket, timeout=5).close()
    again = switch_tls.preflight(at(server, cert_sha256=pki["self"].fingerprint), tmp_path, timeout=5, wait=5)
    assert again["ca_path"] == str(pin)


def test_fingerprint_pin_refuses_an_impostor(serve, pki, tmp_path):
    server = serve("self-impostor")
    with pytest.raises(Refused) as exc:
        switch_tls.preflight(at(server, cert_sha256=pki["self"].fingerprint), tmp_path, timeout=5, wait=5)
    msg = str(exc.value)
    assert f"presented a certificate with SHA-256 fingerprint {pki['self-impostor'].fingerprint}, not the " \
           f"{pki['self'].fingerprint} pinned in switch_api_cert_sha256" in msg
    assert "put the new fingerprint (/certificate print detail on the switch's console) in switch_api_cert_sha256" in msg
    assert list(tmp_path.iterdir()) == []  # nothing pinned


def test_fingerprint_of_a_ca_signed_certificate_asks_for_the_ca(serve, pki, tmp_path):
    server = serve("real")
    with pytest.raises(Refused, match="signed by CN=gb10 lab switch CA, and the API modules can only pin a "
                                      "self-signed certificate"):
        switch_tls.preflight(at(server, cert_sha256=pki["real"].fingerprint), tmp_path, timeout=5, wait=5)
    # with the CA pinned too, the fingerprint is an extra check
    result = switch_tls.preflight(at(server, cert_sha256=pki["real"].fingerprint, ca_path=str(pki["real"].trust)),
                                  tmp_path, timeout=5, wait=5)
    assert result["mode"] == "ca+fingerprint" and result["ca_path"] == str(pki["real"].trust)
    with pytest.raises(Refused, match="not the .* pinned in switch_api_cert_sha256"):
        switch_tls.preflight(at(server, cert_sha256=FP, ca_path=str(pki["real"].trust)), tmp_path, timeout=5, wait=5)


def test_unverified_only_by_opt_in_and_always_warned(serve, pki, tmp_path):
    server = serve("impostor")
    with pytest.raises(Refused, match="nothing tells Ansible how to recognise the switch"):
        switch_tls.preflight(at(server), tmp_path, timeout=5, wait=5)
    result = switch_tls.preflight(at(server, allow_unverified=True), tmp_path, timeout=5, wait=5)
    assert result["mode"] == "unverified" and result["validate_certs"] is False and result["ca_path"] == ""
    assert len(result["warnings"]) == 1
    warning = result["warnings"][0]
    assert warning.startswith(f"UNVERIFIED SWITCH: connecting to crs804 at 127.0.0.1:{server.port} without checking")
    assert f'set switch_api_cert_sha256: "{pki["impostor"].fingerprint}"' in warning


def test_plain_api_by_opt_in(tmp_path):
    server = Simulator(Device({"users": {"admin": "secret"}}), "127.0.0.1", 0).start()
    try:
        result = switch_tls.preflight(at(server, tls=False, allow_unverified=True), tmp_path, timeout=5, wait=5)
        assert result["mode"] == "plain" and result["tls"] is False
        assert "over the plain API (switch_api_tls: false), password in clear" in result["warnings"][0]
    finally:
        server.shutdown()


def test_nobody_listening(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Refused, match=f"The switch crs804 does not answer on 127.0.0.1:{port} \\(RouterOS api-ssl\\) "
                                      "within 1 s: .* Nothing was changed on the switch."):
        switch_tls.preflight(s(address="127.0.0.1", port=port, cert_sha256=FP), tmp_path, timeout=1, wait=1)


def test_api_ssl_refusing_this_machine(serve, pki, tmp_path):
    device = Device({"version": "7.25", "users": {"admin": "secret"}})
    next(r for r in device.rows[("ip", "service")] if r["name"] == "api-ssl")["address"] = "10.0.0.0/8"
    server = serve("real", device)
    with pytest.raises(Refused, match="accepted the connection but no TLS session came up .*api-ssl may not allow "
                                      "this machine"):
        switch_tls.preflight(at(server, ca_path=str(pki["real"].trust)), tmp_path, timeout=5, wait=5)


def _odd_certificate(directory: Path, *, expired: bool = False, san: str = "127.0.0.1") -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd")])
    now = datetime.datetime.now(datetime.UTC)
    start, end = (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)) if expired else \
        (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30))
    try:
        alt = x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        alt = x509.DNSName(san)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_expired_certificate(tmp_path):
    cert, key = _odd_certificate(tmp_path / "expired", expired=True)
    server = _server(cert, key)
    try:
        with pytest.raises(Refused, match="presented the certificate that switch_api_ca_path trusts, but it is "
                                          "outside its validity"):
            switch_tls.preflight(at(server, ca_path=str(cert)), tmp_path / "pins", timeout=5, wait=5)
    finally:
        server.shutdown()


def test_hostname_checked_only_when_asked(tmp_path):
    cert, key = _odd_certificate(tmp_path / "other-name", san="switch.example")
    server = _server(cert, key)
    try:
        assert switch_tls.preflight(at(server, ca_path=str(cert)), tmp_path, timeout=5, wait=5)["mode"] == "ca"
        with pytest.raises(Refused, match="not issued for 127.0.0.1 .* switch_api_validate_cert_hostname is true"):
            switch_tls.preflight(at(server, ca_path=str(cert), validate_cert_hostname=True), tmp_path, timeout=5,
                                 wait=5)
    finally:
        server.shutdown()
