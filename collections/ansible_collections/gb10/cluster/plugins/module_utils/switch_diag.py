"""Classify a CRS804 fabric port from `/interface/ethernet/monitor <port> once` and two counter samples.

Plain Python, no Ansible imports; used by the gb10.cluster.switch_diag module, unit-tested on recorded outputs.

The failure this exists for: after a cold power cycle the switch sees the DAC module present but its
initialisation fails and the link stays down until the cable is physically reseated. That looks like a
RouterOS, RoCE, autoneg, FEC or driver problem first. Every verdict says in plain words what to do.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

OK = "OK"
DISABLED = "PORT_DISABLED"
NO_MODULE = "NO_MODULE"
NOT_INITIALISED = "MODULE_NOT_INITIALISED"
NO_LINK = "NO_LINK"
WRONG_RATE = "WRONG_RATE"
FEC_MISMATCH = "FEC_MISMATCH"
ERRORS_RISING = "ERRORS_RISING"

SUMMARIES = {
    OK: "OK",
    DISABLED: "port disabled",
    NO_MODULE: "no module",
    NOT_INITIALISED: "module present but not initialised",
    NO_LINK: "module ready but no link",
    WRONG_RATE: "wrong rate",
    FEC_MISMATCH: "FEC mismatch",
    ERRORS_RISING: "errors rising",
}

ERROR_COUNTERS = ("rx-fcs-error", "rx-code-error", "rs-fec-uncorrected", "rx-error-events")
READY_STATES = ("ready", "module-ready", "modulready", "moduleready")


@dataclass
class Verdict:
    node: str
    port: str
    status: str
    summary: str
    action: str
    link: str = ""
    rate: str = ""
    fec: str = ""
    module_present: bool | None = None
    cmis_state: str = ""
    rx_loss: bool | None = None
    eeprom_checksum: str = ""
    error_delta: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bounced: bool = False

    @property
    def ok(self) -> bool:
        return self.status == OK

    def message(self) -> str:
        return f"{self.node} ({self.port}): {self.summary}. Action: {self.action}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["message"] = self.message()
        return out


def _bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true"):
        return True
    if text in ("no", "false"):
        return False
    return None


def _int(value: Any) -> int:
    try:
        return int(str(value).replace(" ", ""))
    except (TypeError, ValueError):
        return 0


def _norm_state(value: Any) -> str:
    return "".join(ch for ch in str(value or "").lower() if ch.isalnum() or ch == "-")


def error_deltas(first: Mapping[str, Any] | None, second: Mapping[str, Any] | None,
                 counters: tuple[str, ...] = ERROR_COUNTERS) -> dict[str, int]:
    """How much each error counter rose between two `print stats` samples (missing counters are skipped)."""
    if not first or not second:
        return {}
    out = {}
    for name in counters:
        if name in first and name in second:
            delta = _int(second[name]) - _int(first[name])
            if delta > 0:
                out[name] = delta
    return out


def classify(node: str, port: str, expected: Mapping[str, Any], config: Mapping[str, Any] | None,
             monitor: Mapping[str, Any], first: Mapping[str, Any] | None = None,
             second: Mapping[str, Any] | None = None, interval: float = 0.0,
             error_threshold: int = 0) -> Verdict:
    """One verdict for one port.

    expected: {"rate": "200Gbps", "fec": "fec91", "speed": "200G-baseCR4", "mode": "2x200G"}
    config:   the port's row from /interface/ethernet/print (speed, fec-mode, auto-negotiation, disabled)
    monitor:  the !re of /interface/ethernet/monitor <port> once
    first/second: the port's rows from two `print stats` samples `interval` seconds apart
    """
    config = config or {}
    want_rate = str(expected.get("rate", ""))
    want_fec = str(expected.get("fec", "fec91"))
    want_speed = str(expected.get("speed", ""))
    mode = str(expected.get("mode", ""))
    status = str(monitor.get("status", ""))
    present = _bool(monitor.get("sfp-module-present"))
    rx_loss = _bool(monitor.get("sfp-rx-loss"))
    tx_fault = _bool(monitor.get("sfp-tx-fault"))
    cmis = str(monitor.get("sfp-cmis-module-state", ""))
    checksum = str(monitor.get("eeprom-checksum", ""))
    v = Verdict(node=node, port=port, status=OK, summary=SUMMARIES[OK], action="none",
                link=status, rate=str(monitor.get("rate", "")), fec=str(monitor.get("fec", "")),
                module_present=present, cmis_state=cmis, rx_loss=rx_loss, eeprom_checksum=checksum)
    if checksum and checksum.lower() not in ("good", "ok"):
        v.notes.append(f"the module's EEPROM checksum reads '{checksum}'; such cables were reported to need "
                       f"fec-mode=fec91 forced on both lane-group masters")

    def verdict(code: str, action: str) -> Verdict:
        v.status = code
        v.summary = SUMMARIES[code]
        v.action = action
        return v

    if _bool(config.get("disabled")):
        return verdict(DISABLED, f"enable {port} (run playbooks/switch.yml, which sets disabled=no on the "
                                 f"fabric ports)")
    if present is False:
        return verdict(NO_MODULE, f"plug the DAC for {node} into {port}; the switch sees no module in that cage")
    if status != "link-ok":
        cmis_ready = _norm_state(cmis) in READY_STATES if cmis else None
        sfp_type_unknown = str(monitor.get("sfp-type", "")).lower() in ("", "unknown")
        if cmis_ready is False or tx_fault or (cmis_ready is None and sfp_type_unknown and present):
            return verdict(NOT_INITIALISED,
                           f"reseat the DAC in {port} (pull it out, wait 10 seconds, push it back until it "
                           f"clicks); the module is present but did not initialise after power-up")
        conf_fec = str(config.get("fec-mode", ""))
        if conf_fec and conf_fec != want_fec:
            return verdict(FEC_MISMATCH,
                           f"{port} has fec-mode={conf_fec} but {mode or want_speed} needs {want_fec}; run "
                           f"playbooks/switch.yml (and keep RS-FEC on the node side)")
        conf_speed = str(config.get("speed", ""))
        if want_speed and conf_speed and conf_speed != want_speed:
            return verdict(WRONG_RATE,
                           f"{port} is set to speed={conf_speed} but {mode} needs {want_speed}; run "
                           f"playbooks/switch.yml")
        if _bool(config.get("auto-negotiation")) is True and mode in ("2x200G", "4x100G"):
            return verdict(WRONG_RATE,
                           f"{port} auto-negotiates but a {mode} breakout only links when forced to "
                           f"{want_speed} with auto-negotiation=no; run playbooks/switch.yml")
        if rx_loss:
            return verdict(NO_LINK,
                           f"the module in {port} is ready but receives no signal from {node}: check {node} is "
                           f"powered and its ConnectX-7 port is up; if it is, reseat the DAC at both ends")
        return verdict(NO_LINK,
                       f"the module in {port} is ready and receives light but the link does not come up: check "
                       f"that {node}'s port runs {want_rate or want_speed} with RS-FEC ({want_fec}), then reseat "
                       f"the DAC in {port}")
    rate = str(monitor.get("rate", ""))
    if want_rate and rate and rate != want_rate:
        return verdict(WRONG_RATE,
                       f"{port} linked at {rate} instead of {want_rate}: check {node}'s port speed and that the "
                       f"cable is a {mode or want_rate} breakout DAC, then run playbooks/switch.yml")
    fec = str(monitor.get("fec", ""))
    if fec and want_fec and fec != want_fec:
        return verdict(FEC_MISMATCH,
                       f"{port} runs FEC '{fec}' instead of {want_fec}: set RS-FEC on {node}'s port, run "
                       f"playbooks/switch.yml, then bounce the link")
    deltas = error_deltas(first, second)
    v.error_delta = deltas
    if sum(deltas.values()) > error_threshold:
        rose = ", ".join(f"{k} +{n}" for k, n in sorted(deltas.items()))
        return verdict(ERRORS_RISING,
                       f"errors rose on {port} in {interval:g}s ({rose}): reseat the DAC in {port}; if they keep "
                       f"rising, replace the cable")
    return v


def report(verdicts: list[Verdict]) -> dict[str, Any]:
    failed = [v for v in verdicts if not v.ok]
    return {
        "ok": not failed,
        "ports": [v.as_dict() for v in verdicts],
        "failed_ports": [v.as_dict() for v in failed],
        "messages": [v.message() for v in failed],
        "summary": (f"all {len(verdicts)} fabric ports OK" if not failed else
                    f"{len(failed)} of {len(verdicts)} fabric ports need attention"),
    }


def should_bounce(v: Verdict) -> bool:
    """A port bounce (disable/enable) is worth one try before asking for a physical reseat."""
    return v.status in (NOT_INITIALISED, NO_LINK)


def baseline_problem(baseline: Mapping[str, Any], ports: list[str], now: float, max_age: float) -> str:
    """Why an earlier first counter sample cannot stand in for this diagnosis's ('' when it can).

    baseline: {"taken_at": seconds since the epoch, "stats": {port: row of `print stats`}}
    """
    try:
        age = now - float(baseline.get("taken_at"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "the earlier counter sample has no time"
    stats = baseline.get("stats")
    if not isinstance(stats, Mapping):
        return "the earlier counter sample has no counters"
    if age < 0:
        return "the earlier counter sample is dated in the future"
    if age > max_age:
        return f"the earlier counter sample is {age:.0f} s old (more than {max_age:g} s)"
    missing = [p for p in ports if not stats.get(p)]
    if missing:
        return f"the earlier counter sample has no row for {', '.join(missing)}"
    return ""
