"""Ports handed to child services come from outside the kernel's ephemeral range, so a socket
that asks the kernel for any free port (vLLM's ZMQ and torch.distributed ones) cannot be given
the same port between the pick and the child's bind (that race failed an `up` test once)."""

from __future__ import annotations

import socket
from pathlib import Path

from common import services
from common.services import SERVICE_PORTS, free_port


def test_service_ports_are_free_and_below_the_ephemeral_range():
    low, _high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert SERVICE_PORTS.stop <= low
    ports = {free_port() for _ in range(20)}
    assert all(port in SERVICE_PORTS for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # still free: nothing holds a picked port


def test_a_taken_port_is_skipped(monkeypatch):
    """The pick draws the held port first: it is skipped for the next one drawn."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        taken = held.getsockname()[1]
        other = taken + 1 if taken + 1 in SERVICE_PORTS else taken - 1
        draws = iter([taken, other])

        class Scripted:
            def randrange(self, start: int, stop: int) -> int:
                return next(draws)

        monkeypatch.setattr(services.random, "SystemRandom", Scripted)
        assert free_port() == other
