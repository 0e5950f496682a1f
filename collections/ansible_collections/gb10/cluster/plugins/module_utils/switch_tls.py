"""Is the switch who it says it is? Certificate checks for the RouterOS API (api-ssl), before anything is sent.

Plain Python, no Ansible imports; used by the ``switch_preflight`` module and the inventory validation.

community.routeros verifies the switch's certificate against a CA file (``ca_path``) and nothing else:
it cannot pin a fingerprint, and with no ``ca_path`` it trusts the controller's public CAs without
checking the name, so any publicly signed certificate would pass. The switch role therefore asks the
inventory for one of:

- ``switch_api_ca_path``: the CA that signed the switch's api-ssl certificate (or that certificate itself
  when it is self-signed). Checked here first, for one clear sentence when it does not match, then by
  every API module on every connection.
- ``switch_api_cert_sha256``: the SHA-256 fingerprint of the switch's certificate. Compared here (the
  collection cannot); on a match the certificate is written to a file that every API module then gets as
  its ``ca_path``, so each later connection is verified against exactly that certificate, not just the
  first one. That only works for a self-signed certificate (Python's TLS will not take a certificate
  signed by someone else as a trust anchor); for one signed by a CA, pin the CA instead.
- ``switch_api_allow_unverified: true``: connect without knowing who answers (any certificate, anonymous
  TLS or the plain API). A warning on every run says so.

Nothing is sent to the switch (not even the user name) until the certificate has been accepted.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINGERPRINT_RE = re.compile(r"^[0-9A-F]{64}$")
_PREFIX_RE = re.compile(r"^\s*(?:sha-?256(?:\s+fingerprint)?\s*[=:]\s*)", re.IGNORECASE)


class Refused(Exception):
    """The switch could not be reached, or not recognised; the message is the sentence to show."""


# ---------------------------------------------------------------- fingerprints

def normalise_fingerprint(value: Any) -> str | None:
    """'ab:cd:...' / 'ABCD...' / 'sha256 Fingerprint=AB:CD:...' -> 'AB:CD:...' (None when not one)."""
    if not isinstance(value, str):
        return None
    text = _PREFIX_RE.sub("", value.strip())
    digits = re.sub(r"[\s:\-]", "", text).upper()
    if not FINGERPRINT_RE.match(digits):
        return None
    return ":".join(digits[i:i + 2] for i in range(0, 64, 2))


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate in the AB:CD:... form."""
    digits = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digits[i:i + 2] for i in range(0, 64, 2))


def describe(der: bytes) -> dict[str, Any]:
    """Subject, issuer, expiry and whether it signed itself, for messages (empty without cryptography)."""
    out: dict[str, Any] = {"sha256": fingerprint(der)}
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - ansible-core depends on cryptography
        return out
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return out
    out["subject"] = cert.subject.rfc4514_string()
    out["issuer"] = cert.issuer.rfc4514_string()
    out["not_after"] = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    out["self_signed"] = cert.subject == cert.issuer
    return out


def pem_has_certificate(path: Path) -> bool:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return "-----BEGIN CERTIFICATE-----" in text


# ---------------------------------------------------------------- settings

@dataclass
class Settings:
    """How the role is told to recognise the switch (the switch_api_* variables)."""

    host: str  # the inventory name, for messages
    address: str  # what the modules connect to (switch_api_host)
    port: int = 8729
    tls: bool = True
    ca_path: str = ""
    cert_sha256: str = ""
    allow_unverified: bool = False
    force_no_cert: bool = False
    validate_cert_hostname: bool = False
    removed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_vars(cls, host: str, values: Mapping[str, Any]) -> Settings:
        """From role variables (switch_api_*), with the role's defaults for the ones not set."""
        def flag(name: str, default: bool) -> bool:
            value = values.get(name, default)
            return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "yes", "on", "1")

        address = values.get("switch_api_host") or values.get("ansible_host") or host
        try:
            port = int(values.get("switch_api_port", 8729))
        except (TypeError, ValueError):
            port = 8729
        removed = {name: values[name] for name in REMOVED_VARS if name in values}
        return cls(host=host, address=str(address), port=port, tls=flag("switch_api_tls", True),
                   ca_path=str(values.get("switch_api_ca_path") or ""),
                   cert_sha256=str(values.get("switch_api_cert_sha256") or ""),
                   allow_unverified=flag("switch_api_allow_unverified", False),
                   force_no_cert=flag("switch_api_force_no_cert", False),
                   validate_cert_hostname=flag("switch_api_validate_cert_hostname", False), removed=removed)


# Variables the role no longer reads, with what replaced them.
REMOVED_VARS = {
    "switch_api_validate_certs": (
        "the switch's certificate is always checked now, against switch_api_ca_path or switch_api_cert_sha256; "
        "remove it (to connect without checking, set switch_api_allow_unverified: true)"),
}


def mode(s: Settings) -> str:
    """plain | anonymous | ca | fingerprint | ca+fingerprint | unverified (assumes settings_errors() is empty)."""
    if not s.tls:
        return "plain"
    if s.force_no_cert:
        return "anonymous"
    pins = [name for name, value in (("ca", s.ca_path), ("fingerprint", s.cert_sha256)) if value]
    return "+".join(pins) if pins else "unverified"


def settings_errors(s: Settings, check_files: bool = True) -> list[str]:
    """One sentence per mistake in how the switch is to be recognised; empty when it can be."""
    errors: list[str] = []
    for name in s.removed:
        errors.append(f"{s.host}: {name} is no longer used: {REMOVED_VARS[name]}.")
    pinned = bool(s.ca_path or s.cert_sha256)
    if s.cert_sha256 and normalise_fingerprint(s.cert_sha256) is None:
        errors.append(
            f"{s.host}: switch_api_cert_sha256 is {s.cert_sha256!r}, not a SHA-256 fingerprint: give the 64 hex digits "
            "(colons optional) of the switch's api-ssl certificate, as /certificate print detail shows them on its console.")
    if s.ca_path and check_files:
        path = Path(s.ca_path)
        if not path.is_absolute():
            errors.append(
                f"{s.host}: switch_api_ca_path is {s.ca_path!r}, a relative path: give the absolute path of the CA "
                "file on this machine (e.g. \"{{ inventory_dir }}/files/switch-ca.pem\").")
        elif not path.is_file():
            errors.append(
                f"{s.host}: switch_api_ca_path {s.ca_path} does not exist on this machine: export the CA that signed "
                "the switch's api-ssl certificate (or that certificate if it is self-signed) to that file.")
        elif not pem_has_certificate(path):
            errors.append(
                f"{s.host}: switch_api_ca_path {s.ca_path} holds no PEM certificate (-----BEGIN CERTIFICATE-----): "
                "export the CA certificate in PEM form (/certificate export-certificate <ca> on the switch).")
    if not s.tls:
        if pinned:
            errors.append(
                f"{s.host}: switch_api_tls is false, so the certificate pinned in switch_api_ca_path or "
                "switch_api_cert_sha256 is never checked: set switch_api_tls: true (api-ssl, 8729).")
        elif not s.allow_unverified:
            errors.append(
                f"{s.host}: switch_api_tls is false, which sends the API password in clear to whoever answers on "
                f"{s.address}:{s.port}: keep switch_api_tls: true and pin the switch's certificate (switch_api_ca_path "
                "or switch_api_cert_sha256), or set switch_api_allow_unverified: true to accept that.")
        return errors
    if s.force_no_cert:
        if pinned:
            errors.append(
                f"{s.host}: switch_api_force_no_cert (anonymous TLS, no certificate) cannot be checked against "
                "switch_api_ca_path or switch_api_cert_sha256: remove switch_api_force_no_cert.")
        elif not s.allow_unverified:
            errors.append(
                f"{s.host}: switch_api_force_no_cert (anonymous TLS) cannot tell the switch from an impostor: give "
                "api-ssl a certificate and pin it (switch_api_ca_path or switch_api_cert_sha256), or set "
                "switch_api_allow_unverified: true to accept that.")
        return errors
    if not pinned and not s.allow_unverified:
        errors.append(
            f"{s.host}: nothing tells Ansible how to recognise the switch: set switch_api_ca_path to the CA file that "
            "signed its api-ssl certificate, or switch_api_cert_sha256 to that certificate's SHA-256 fingerprint "
            "(docs/switch.md), or set switch_api_allow_unverified: true to connect without checking (anyone on the "
            "path could then pose as the switch and collect its password).")
    return errors


# ---------------------------------------------------------------- messages

def _where(s: Settings) -> str:
    return f"The switch {s.host} at {s.address}:{s.port}"


_WHAT_TO_DO = ("this may not be your switch, so nothing was sent to it (not even the user name) and nothing was "
               "changed; check that ansible_host ({address}) is the switch's address, and if its certificate was "
               "replaced on purpose, {fix}.")


def ca_mismatch_message(s: Settings, presented: Mapping[str, Any], reason: str) -> str:
    who = presented.get("subject") or "?"
    issuer = presented.get("issuer") or "?"
    fix = ("point switch_api_ca_path at the CA that signed the new one (or its fingerprint in "
           "switch_api_cert_sha256 if it is self-signed)")
    return (f"{_where(s)} presented a certificate ({who}, issued by {issuer}, SHA-256 {presented.get('sha256')}) "
            f"that the CA in switch_api_ca_path ({s.ca_path}) did not sign ({reason}): "
            + _WHAT_TO_DO.format(address=s.address, fix=fix))


def fingerprint_mismatch_message(s: Settings, presented: Mapping[str, Any]) -> str:
    fix = ("put the new fingerprint (/certificate print detail on the switch's console) in switch_api_cert_sha256")
    return (f"{_where(s)} presented a certificate with SHA-256 fingerprint {presented.get('sha256')}, not the "
            f"{normalise_fingerprint(s.cert_sha256)} pinned in switch_api_cert_sha256 ({presented.get('subject') or '?'}): "
            + _WHAT_TO_DO.format(address=s.address, fix=fix))


def not_self_signed_message(s: Settings, presented: Mapping[str, Any]) -> str:
    return (f"{_where(s)} presented the certificate pinned in switch_api_cert_sha256, but it is signed by "
            f"{presented.get('issuer') or 'a CA'}, and the API modules can only pin a self-signed certificate by "
            "itself: set switch_api_ca_path to the certificate of that CA instead (and keep the fingerprint if you like).")


def expired_message(s: Settings, presented: Mapping[str, Any], source: str) -> str:
    return (f"{_where(s)} presented the certificate that {source} trusts, but it is outside its validity "
            f"(valid until {presented.get('not_after') or '?'}, checked against this machine's clock): renew the "
            "switch's api-ssl certificate (and update the pin), or fix the clock of this machine or of the switch.")


def hostname_message(s: Settings, presented: Mapping[str, Any]) -> str:
    return (f"{_where(s)} presented a certificate signed by the CA in switch_api_ca_path but not issued for "
            f"{s.address} ({presented.get('subject') or '?'}), and switch_api_validate_cert_hostname is true: reissue "
            f"it with {s.address} as a subject alternative name, or set switch_api_validate_cert_hostname: false "
            "(the CA is still checked).")


def verify_failed_message(s: Settings, presented: Mapping[str, Any], source: str, reason: str) -> str:
    return (f"{_where(s)} presented a certificate ({presented.get('subject') or '?'}, SHA-256 "
            f"{presented.get('sha256')}) that could not be verified against {source} ({reason}); nothing was sent to "
            "it and nothing was changed: check the pin and the switch's api-ssl certificate.")


def handshake_message(s: Settings, reason: str) -> str:
    return (f"{_where(s)} accepted the connection but no TLS session came up ({reason}): api-ssl may not allow this "
            "machine (/ip service api-ssl address, see switch_services_address) or have no certificate (/ip service "
            "set api-ssl certificate=...); nothing was sent to it and nothing was changed.")


def unreachable_message(s: Settings, waited: float) -> str:
    service = "api-ssl" if s.tls else "api"
    return (f"The switch {s.host} does not answer on {s.address}:{s.port} (RouterOS {service}) within {waited:.0f} s: "
            "check that it is powered, that ansible_host is its management address and that /ip service "
            f"{service} is enabled for this machine. Nothing was changed on the switch.")


def unverified_warning(s: Settings, presented: Mapping[str, Any] | None) -> str:
    what = {"plain": "over the plain API (switch_api_tls: false), password in clear",
            "anonymous": "over anonymous TLS (switch_api_force_no_cert)",
            "unverified": "without checking its certificate"}[mode(s)]
    text = (f"UNVERIFIED SWITCH: connecting to {s.host} at {s.address}:{s.port} {what}, because "
            "switch_api_allow_unverified is true. Anyone on the path can pose as the switch and collect the API "
            "password.")
    if presented and presented.get("sha256"):
        text += (f" It presented a certificate with SHA-256 {presented['sha256']}: if the switch's console shows the "
                 f"same fingerprint (/certificate print detail), set switch_api_cert_sha256: \"{presented['sha256']}\" "
                 "and remove switch_api_allow_unverified.")
    else:
        text += " Give api-ssl a certificate, pin it (docs/switch.md) and remove switch_api_allow_unverified."
    return text


# ---------------------------------------------------------------- the network part

def client_context(cafile: str | None, check_hostname: bool) -> ssl.SSLContext:
    """The context community.routeros builds for validate_certs=true (create_default_context(cafile=...))."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = check_hostname
    return ctx


def _connect(s: Settings, timeout: float, wait: float) -> socket.socket:
    """A TCP connection to the API port, retried until wait seconds have passed."""
    deadline = time.monotonic() + max(wait, timeout)
    while True:
        try:
            return socket.create_connection((s.address, s.port), timeout=timeout)
        except OSError:
            if time.monotonic() >= deadline:
                raise Refused(unreachable_message(s, max(wait, timeout))) from None
            time.sleep(1)


def presented_certificate(s: Settings, timeout: float, wait: float) -> bytes:
    """The certificate the switch presents (DER), read without trusting it; no API word is sent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = _connect(s, timeout, wait)
    try:
        with ctx.wrap_socket(sock, server_hostname=s.address) as tls:
            der = tls.getpeercert(binary_form=True)
    except (ssl.SSLError, OSError) as exc:
        raise Refused(handshake_message(s, _reason(exc))) from None
    finally:
        sock.close()
    if not der:
        raise Refused(handshake_message(s, "no certificate presented"))
    return der


def verify_with(s: Settings, cafile: str, timeout: float, wait: float) -> ssl.SSLCertVerificationError | None:
    """A handshake as the API modules will make it; the verification error, or None when it passes."""
    ctx = client_context(cafile, s.validate_cert_hostname)
    sock = _connect(s, timeout, wait)
    try:
        server_hostname = s.address if s.validate_cert_hostname else None
        with ctx.wrap_socket(sock, server_hostname=server_hostname):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc
    except (ssl.SSLError, OSError) as exc:
        raise Refused(handshake_message(s, _reason(exc))) from None
    finally:
        sock.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message or exc.reason or exc)
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc) or type(exc).__name__


def write_pin(directory: Path, host: str, der: bytes) -> Path:
    """The pinned certificate as a PEM file the API modules take as ca_path (content-addressed, written once)."""
    directory.mkdir(parents=True, exist_ok=True)
    digits = hashlib.sha256(der).hexdigest()
    path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', host)}-{digits[:16]}.pem"
    pem = ssl.DER_cert_to_PEM_cert(der)
    if not path.exists() or path.read_text() != pem:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pin-")
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return path


def _classify(s: Settings, error: ssl.SSLCertVerificationError, presented: Mapping[str, Any], source: str) -> str:
    code = getattr(error, "verify_code", None)
    reason = _reason(error)
    if code in (9, 10):  # not yet valid / expired
        return expired_message(s, presented, source)
    if code in (62, 64):  # host name or IP address mismatch
        return hostname_message(s, presented)
    if source == "switch_api_ca_path" and code in (2, 18, 19, 20, 21, 7):
        return ca_mismatch_message(s, presented, reason)
    return verify_failed_message(s, presented, source, reason)


def preflight(s: Settings, pin_dir: Path, timeout: float = 10, wait: float = 30) -> dict[str, Any]:
    """Check the settings and who answers; return the connection parameters for the API modules.

    Raises Refused with the sentence to show. The result: mode, tls, validate_certs, force_no_cert, ca_path
    (the file the modules trust, '' for none), presented (the certificate's sha256, subject, issuer,
    not_after) and warnings.
    """
    errors = settings_errors(s)
    if errors:
        raise Refused(" ".join(errors))
    how = mode(s)
    result: dict[str, Any] = {"mode": how, "tls": s.tls, "validate_certs": True, "force_no_cert": False,
                              "ca_path": "", "presented": {}, "warnings": []}
    if how == "plain":
        _connect(s, timeout, wait).close()
        result["validate_certs"] = False
        result["warnings"].append(unverified_warning(s, None))
        return result
    if how == "anonymous":
        _connect(s, timeout, wait).close()
        result.update(validate_certs=False, force_no_cert=True)
        result["warnings"].append(unverified_warning(s, None))
        return result
    der = presented_certificate(s, timeout, wait)
    presented = describe(der)
    result["presented"] = presented
    if how == "unverified":
        result["validate_certs"] = False
        result["warnings"].append(unverified_warning(s, presented))
        return result
    if s.cert_sha256 and presented["sha256"] != normalise_fingerprint(s.cert_sha256):
        raise Refused(fingerprint_mismatch_message(s, presented))
    if s.ca_path:
        error = verify_with(s, s.ca_path, timeout, wait)
        if error is not None:
            raise Refused(_classify(s, error, presented, "switch_api_ca_path"))
        result["ca_path"] = s.ca_path
        return result
    pin = write_pin(pin_dir, s.host, der)
    error = verify_with(s, str(pin), timeout, wait)
    if error is not None:
        if getattr(error, "verify_code", None) in (2, 20, 21) or presented.get("self_signed") is False:
            raise Refused(not_self_signed_message(s, presented))
        raise Refused(_classify(s, error, presented, "switch_api_cert_sha256"))
    result["ca_path"] = str(pin)
    return result
