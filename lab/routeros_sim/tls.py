"""Certificates for the simulator's api-ssl listener.

The lab gives the simulated switch a certificate the way an operator gives a real CRS804 one, and
pins it in the inventory:

- ``make_lab_pki(dir)``: a lab CA (``cert.pem``, the file to trust, and ``ca-key.pem``) and the
  switch's certificate signed by it (``server.pem``, ``server-key.pem``). The inventory pins the CA
  (``switch_api_ca_path``).
- ``make_lab_pki(dir, self_signed=True)``: the switch's own self-signed certificate, as RouterOS makes
  with ``/certificate add ... ; /certificate sign``; ``cert.pem`` is then a copy of it. The inventory
  pins it by fingerprint (``switch_api_cert_sha256``) or as its own CA.

Either way ``server.sha256`` holds the SHA-256 fingerprint of ``server.pem`` (``AB:CD:...``), and
``cert.pem`` is what a client trusts. A second folder made the same way is an impostor: same names,
other keys, so a client that pins the first one refuses it.

``make_self_signed(dir)`` keeps the old single-certificate form (``cert.pem``/``key.pem``) for tests.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import ssl
from dataclasses import dataclass
from pathlib import Path

SWITCH_NAME = "crs804-sim"
CA_NAME = "gb10 lab switch CA"


@dataclass(frozen=True)
class LabPKI:
    trust: Path  # cert.pem: the CA (or the self-signed certificate) a client pins
    server_cert: Path  # what the switch presents
    server_key: Path
    fingerprint: str  # SHA-256 of server_cert, AB:CD:... form
    self_signed: bool


def fingerprint_of(pem_file: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(pem_file.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def make_lab_pki(directory: Path, self_signed: bool = False, common_name: str = SWITCH_NAME) -> LabPKI:
    """Create the lab's certificates in directory once (again when the kind asked for changes)."""
    directory.mkdir(parents=True, exist_ok=True)
    trust, cert, key = directory / "cert.pem", directory / "server.pem", directory / "server-key.pem"
    marker = directory / "pki.json"
    kind = "self-signed" if self_signed else "ca-signed"
    current = json.loads(marker.read_text()).get("kind") if marker.exists() else None
    if current != kind or not (trust.exists() and cert.exists() and key.exists()):
        _generate(directory, self_signed, common_name)
        marker.write_text(json.dumps({"kind": kind}) + "\n")
    fp = fingerprint_of(cert)
    (directory / "server.sha256").write_text(fp + "\n")
    return LabPKI(trust=trust, server_cert=cert, server_key=key, fingerprint=fp, self_signed=self_signed)


def _generate(directory: Path, self_signed: bool, common_name: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key_usage(ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                             encipher_only=False, decipher_only=False)

    def pem(obj) -> bytes:
        return obj.public_bytes(serialization.Encoding.PEM)

    def key_pem(private) -> bytes:
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())

    server_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if self_signed:
        certificate = (builder.issuer_name(subject)
                       .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                       .add_extension(key_usage(True), critical=True)
                       .sign(server_key, hashes.SHA256()))
        trust_pem = pem(certificate)
        (directory / "ca-key.pem").unlink(missing_ok=True)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        ca = (x509.CertificateBuilder()
              .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(key_usage(True), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        certificate = (builder.issuer_name(ca_name)
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .add_extension(key_usage(False), critical=True)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                      critical=False)
                       .sign(ca_key, hashes.SHA256()))
        trust_pem = pem(ca)
        _write_secret(directory / "ca-key.pem", key_pem(ca_key))
    _write_secret(directory / "server-key.pem", key_pem(server_key))
    (directory / "server.pem").write_bytes(pem(certificate))
    (directory / "cert.pem").write_bytes(trust_pem)
    (directory / "key.pem").unlink(missing_ok=True)  # the single-certificate layout of older labs


def _write_secret(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def make_self_signed(directory: Path, common_name: str = SWITCH_NAME) -> tuple[Path, Path]:
    """One self-signed certificate as cert.pem/key.pem (created once): trusted and presented as is."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    pki = make_lab_pki(directory / ".self-signed", self_signed=True, common_name=common_name)
    cert.write_bytes(pki.server_cert.read_bytes())
    _write_secret(key, pki.server_key.read_bytes())
    return cert, key
