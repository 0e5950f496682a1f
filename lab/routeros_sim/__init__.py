"""RouterOS API simulator: a test double of a MikroTik CRS804-4DDQ for the gb10-cluster lab.

It speaks the real RouterOS API wire protocol (plain or TLS) so unmodified librouteros and the
community.routeros API modules can be tested against it. It is NOT RouterOS; see docs/switch.md for
what it does and does not model.
"""
from .model import Device, Trap
from .server import Simulator

__all__ = ["Device", "Simulator", "Trap"]
