"""The books a backend keeps of its machine: the admission ledger and reserved ports."""

from __future__ import annotations

import socket
from pathlib import Path

from ketch.core.backend import LocalBackend, Request
from ketch.core.backend.host import Ledger, ReservedPorts


def test_ledger_admits_what_fits_first_come_first_served() -> None:
    ledger = Ledger(Request(cpu=4, memory=2**30))
    assert ledger.try_admit("a", Request(cpu=3)) == (True, "")
    ok, why = ledger.try_admit("b", Request(cpu=2))
    assert not ok and "waiting for resources" in why
    assert not ledger.try_admit("c", Request(cpu=1))[0]  # "b" is first in line
    ok, why = ledger.try_admit("huge", Request(cpu=8))
    assert not ok and "more than this machine has" in why
    ledger.release("a")
    ledger.release("huge")
    assert ledger.try_admit("b", Request(cpu=2)) == (True, "")
    assert ledger.try_admit("c", Request(cpu=1)) == (True, "")
    assert ledger.admitted("b") and not ledger.admitted("a")


def test_reserved_ports_are_handed_out_once(tmp_path: Path) -> None:
    ports = ReservedPorts(tmp_path)
    other = ReservedPorts(tmp_path)  # another server on this machine
    first = ports.reserve()
    assert first in ports
    assert ports.reserve(first) != first  # taken here
    assert other.reserve(first) != first  # and held against other servers
    ports.release([first])
    assert first not in ports
    assert other.reserve(first) == first


def test_a_preferred_port_in_use_is_not_given(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        assert ReservedPorts(tmp_path).reserve(busy) != busy


def test_local_backend_keeps_the_books() -> None:
    with LocalBackend(max_warm_interpreters=0) as backend:
        assert backend.admit(("Job", "ns", "a"), Request(cpu=0.1)) == (True, "")
        backend.release(("Job", "ns", "a"))
        port = backend.reserve_port()
        assert backend.reserve_port(port) != port
        backend.release_ports([port])
        assert backend.gpus() >= 0
