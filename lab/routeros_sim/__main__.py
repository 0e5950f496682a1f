"""Run the RouterOS API simulator: python -m lab.routeros_sim --help"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from .model import Device
from .server import Simulator
from .tls import make_lab_pki


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.routeros_sim",
                                     description="RouterOS API simulator (test double of a CRS804-4DDQ)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8729, help="0 picks a free port")
    parser.add_argument("--no-tls", action="store_true", help="plain API (like service 'api', 8728)")
    parser.add_argument("--cert-dir", type=Path,
                        help="where the certificates are (created if missing): cert.pem (to trust), server.pem, "
                             "server-key.pem, server.sha256; another folder makes an impostor")
    parser.add_argument("--self-signed", action="store_true",
                        help="present a self-signed certificate (cert.pem is a copy of it) instead of one signed "
                             "by the lab CA (cert.pem is the CA)")
    parser.add_argument("--user", default="admin", help="API user (group full); the factory user admin exists too")
    parser.add_argument("--password-file", type=Path, help="file holding the password (else '')")
    parser.add_argument("--seed", type=Path, help="JSON seed: version, ports (conditions), defconf")
    parser.add_argument("--version", dest="ros_version", help="RouterOS version, overrides the seed")
    parser.add_argument("--condition", action="append", default=[], metavar="PORT=CONDITION",
                        help="seed a port condition (repeatable): ok, no-module, module-not-initialised, "
                             "wrong-rate, fec-mismatch, errors-rising, no-partner")
    parser.add_argument("--state-file", type=Path, help="persist configuration here (survives restarts)")
    parser.add_argument("--phy-file", type=Path, help="JSON re-read on change: port conditions")
    parser.add_argument("--port-file", type=Path, help="write the listening port here once ready")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    seed = json.loads(args.seed.read_text()) if args.seed else {}
    if args.ros_version:
        seed["version"] = args.ros_version
    for item in args.condition:
        port, _, condition = item.partition("=")
        seed.setdefault("ports", {})[port] = condition
    password = args.password_file.read_text().strip() if args.password_file else ""
    # The factory user admin, with a password nobody is told (as on a switch whose sticker is lost),
    # then the API user the lab logs in with.
    users: dict[str, object] = {"admin": secrets.token_urlsafe(18)}
    users.update(seed.get("users", {}))
    users[args.user] = password
    seed["users"] = users
    device = Device(seed, state_file=args.state_file, phy_file=args.phy_file)

    certfile = keyfile = None
    if not args.no_tls:
        cert_dir = args.cert_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "routeros_sim_cert"
        pki = make_lab_pki(cert_dir, self_signed=args.self_signed)
        certfile, keyfile = str(pki.server_cert), str(pki.server_key)
    sim = Simulator(device, args.host, args.port, certfile, keyfile)
    if args.port_file:
        args.port_file.write_text(f"{sim.port}\n")
    logging.getLogger("routeros_sim").info(
        "RouterOS API simulator (RouterOS %s) listening on %s:%d (%s)", device.version, args.host, sim.port,
        f"TLS, certificate {certfile}" if certfile else "plain")

    def stop(*_: object) -> None:
        sim.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sim.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
