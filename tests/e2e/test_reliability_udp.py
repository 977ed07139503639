"""RELIABILITY.md, the rows that apply to `sockflow serve echo` over UDP: datagram sizes,
truncation, descriptors, the default address, a taken port, several loops and SIGTERM.
Loopback only, port 0, every wait bounded."""
import errno
import os
import signal
import socket
import subprocess
import time

import pytest

from checked import procs, serve  # noqa: F401 (fixtures)
from conftest import SOCKFLOW, udp_exchange
from procnet import O_CLOEXEC, O_NONBLOCK, fd_flags, proc_sockets


def udp_port(s, host):
    try:
        return s.port("udp", host=host)
    except AssertionError:
        pytest.skip(f"no {host} listener on this host")


@pytest.mark.parametrize("host,sizes,too_big", [
    ("127.0.0.1", (1, 1472, 65507), 65508),    # 65535 - 20 (IPv4) - 8 (UDP)
    ("::1", (1, 1452, 65527), 65528),          # 65535 - 8: the IPv6 payload length field
], ids=["ipv4", "ipv6"])
def test_udp_sizes(serve, host, sizes, too_big):
    """The smallest, a full Ethernet-sized and the largest datagram come back identical;
    one byte more is EMSGSIZE at the client and never reaches the server."""
    s = serve("echo:0", "-u")
    port = udp_port(s, host)
    for size in sizes:
        data = os.urandom(size)
        assert udp_exchange(port, data, host=host) == data, f"{size} bytes"
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as c:
        with pytest.raises(OSError) as e:
            c.sendto(b"x" * too_big, (host, port))
        assert e.value.errno == errno.EMSGSIZE
    assert udp_exchange(port, b"still here", host=host) == b"still here"


def test_udp_truncation(serve):
    """--dgram-max 1000: a 1000-byte datagram is echoed; 1001 and 2000 bytes are dropped,
    never echoed cut to 1000."""
    s = serve("echo:0", "-u", "-4", "--dgram-max", "1000")
    port = s.port("udp")
    fits = os.urandom(1000)
    assert udp_exchange(port, fits) == fits
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(0.5)
        for size in (2000, 1001):
            big = os.urandom(size)
            c.sendto(big, ("127.0.0.1", port))
            c.sendto(fits, ("127.0.0.1", port))
            assert c.recvfrom(70000)[0] == fits, f"the {size}-byte datagram was echoed"
        with pytest.raises(socket.timeout):
            c.recvfrom(70000)


def test_udp_descriptor_flags(serve):
    """The UDP sockets are nonblocking and close-on-exec."""
    s = serve("echo:0", "-u")
    socks = proc_sockets(s.pid, "udp")
    assert socks
    for fd, _, _, _, _ in socks:
        flags = fd_flags(s.pid, fd)
        assert flags & O_NONBLOCK, f"fd {fd} blocking: flags {flags:o}"
        assert flags & O_CLOEXEC, f"fd {fd} not close-on-exec: flags {flags:o}"


def test_udp_listen_defaults_to_loopback(serve):
    """No -l: UDP is bound to 127.0.0.1 and ::1 only; -l names the address."""
    s = serve("echo:0", "-u")
    hosts = {h for _, _, h, _, _ in proc_sockets(s.pid, "udp")}
    assert "127.0.0.1" in hosts and hosts <= {"127.0.0.1", "::1"}, hosts
    t = serve("-l", "127.0.0.2", "-u", "echo:0")
    assert {h for _, _, h, _, _ in proc_sockets(t.pid, "udp")} == {"127.0.0.2"}


@pytest.mark.parametrize("loops", [1, 2])
def test_udp_second_instance_address_in_use(serve, procs, loops):
    """A second server on a UDP port the first one holds: 'Address already in use',
    exit 1, even with several loops (SO_REUSEPORT)."""
    a = serve("echo:0", "-u", "-4", "-j", str(loops))
    port = a.port("udp")
    b = procs([SOCKFLOW, "serve", "-u", "-4", "-j", str(loops), f"echo:{port}"])
    try:
        rc = b.wait(3)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a second server started on udp port {port}: {b.stdout!r}")
    assert rc == 1, (rc, b.stderr)
    assert "Address already in use" in b.stderr
    assert udp_exchange(port, b"first") == b"first"


def test_udp_two_loops(serve):
    """-j 2: 16 sources, 40 datagrams each, sizes up to 8 KiB: every reply exact. (16 in
    flight from one address is past the default burst: no budget here.)"""
    s = serve("echo:0", "-u", "-4", "-j", "2", "--udp-rate", "0")
    port = s.port("udp")
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    try:
        for c in clients:
            c.settimeout(1.0)
        for k in range(40):
            sent = []
            for i, c in enumerate(clients):
                data = os.urandom(1 + (i * 997 + k * 131) % 8192)
                c.sendto(data, ("127.0.0.1", port))
                sent.append(data)
            for c, data in zip(clients, sent):
                assert c.recvfrom(70000)[0] == data
    finally:
        for c in clients:
            c.close()
    assert s.stop() == 0


def test_udp_sigterm_exits_at_once(serve):
    """UDP has no clients to wait for: SIGTERM ends the server at once, exit 0."""
    s = serve("echo:0", "-u", "-4", "--drain-timeout", "5")
    assert udp_exchange(s.port("udp"), b"x") == b"x"
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.wait(2) == 0
    assert time.monotonic() - t0 < 0.5
