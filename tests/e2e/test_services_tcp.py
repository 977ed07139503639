"""The classic services over TCP, byte-exact: echo, discard, chargen, daytime, time;
read with python sockets and with real clients (nc, socat)."""
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import SOCKFLOW, Proc
from svc_helpers import (DAYTIME_RE, EPOCH_1900, chargen_stream, connect, daytime_seconds,
                         read_exactly, read_to_eof, rfc868_seconds)

SERVICES = ["echo:0", "discard:0", "chargen:0", "daytime:0", "time:0"]


@pytest.fixture
def srv(serve):
    return serve("-t", *SERVICES, "--send-timeout", "3")


def test_echo_binary_safe_until_close(srv):
    data = os.urandom(1 << 20) + bytes(range(256)) * 64
    with connect(srv.port("tcp", "echo")) as s:
        t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        t.start()
        got = read_to_eof(s)
        t.join(10)
    assert got == data


def test_echo_over_ipv6(srv):
    if not any(h == "::1" for _, h, _, _ in srv.listeners):
        pytest.skip("no IPv6 loopback here")
    with connect(srv.port("tcp", "echo", "::1"), host="::1") as s:
        s.sendall(b"six\r\n")
        assert read_exactly(s, 5) == b"six\r\n"


def test_discard_reads_everything_and_closes_with_fin(srv):
    with connect(srv.port("tcp", "discard")) as s:
        s.sendall(os.urandom(512 * 1024))
        s.shutdown(socket.SHUT_WR)
        # recv() returning b"" is a FIN; a reset would raise ConnectionResetError.
        assert read_to_eof(s) == b""


def test_chargen_first_64k_exact(srv):
    with connect(srv.port("tcp", "chargen")) as s:
        got = read_exactly(s, 65536)
    assert got == chargen_stream(65536)
    assert got[:74] == b" " + bytes(range(0x21, 0x21 + 71)) + b"\r\n"


def test_chargen_keeps_streaming_after_client_half_close(srv):
    with connect(srv.port("tcp", "chargen")) as s:
        s.shutdown(socket.SHUT_WR)
        assert read_exactly(s, 200000) == chargen_stream(200000)


def test_chargen_client_going_frees_the_connection(srv):
    base = srv.fd_count()
    for _ in range(5):
        with connect(srv.port("tcp", "chargen")) as s:
            read_exactly(s, 10000)
    deadline = time.monotonic() + 5
    while srv.fd_count() != base and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.fd_count() == base


def test_chargen_reader_that_stops_is_closed_after_send_timeout(srv):
    with connect(srv.port("tcp", "chargen")) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        read_exactly(s, 1000)
        rss = srv.rss_kb()
        srv.wait_line(r"send timeout", timeout=15, stream="err")
        assert srv.rss_kb() - rss < 8192


def test_daytime_format_and_close(srv):
    with connect(srv.port("tcp", "daytime")) as s:
        line = read_to_eof(s)
    assert len(line) == 26 and DAYTIME_RE.match(line), line
    assert abs(daytime_seconds(line) - time.time()) <= 2


def test_daytime_reply_survives_unread_client_input(srv):
    # The client writes before it reads: the server must not reset the connection
    # (which would discard the reply) because of unread input.
    with connect(srv.port("tcp", "daytime")) as s:
        s.sendall(b"junk\r\n" * 20000)
        time.sleep(0.2)
        s.shutdown(socket.SHUT_WR)
        line = read_to_eof(s)
    assert DAYTIME_RE.match(line), line


def test_time_value(srv):
    with connect(srv.port("tcp", "time")) as s:
        four = read_to_eof(s)
    assert len(four) == 4
    assert abs(rfc868_seconds(four) - time.time()) <= 2
    assert int.from_bytes(four, "big") > EPOCH_1900


def test_time_survives_unread_client_input(srv):
    with connect(srv.port("tcp", "time")) as s:
        s.sendall(os.urandom(100000))
        s.shutdown(socket.SHUT_WR)
        assert len(read_to_eof(s)) == 4


# ---- real clients ----

def _read_from_client(argv, n, timeout=10):
    """Start a client, read n bytes of its stdout (or to its exit), stop it by its pid."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    got = bytearray()
    done = threading.Event()

    def reader():
        while len(got) < n:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            got.extend(chunk)
        done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    done.wait(timeout)
    if p.poll() is None:
        p.kill()
    p.wait(timeout=5)
    t.join(2)
    return bytes(got[:n])


@pytest.mark.skipif(shutil.which("nc") is None, reason="nc not installed")
def test_nc_reads_chargen_and_daytime(srv):
    got = _read_from_client(["nc", "-d", "127.0.0.1", str(srv.port("tcp", "chargen"))], 7400)
    assert got == chargen_stream(7400)
    line = _read_from_client(["nc", "-d", "127.0.0.1", str(srv.port("tcp", "daytime"))], 1000)
    assert DAYTIME_RE.match(line), line


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")
def test_socat_reads_chargen_and_daytime(srv):
    got = _read_from_client(["socat", "-u", f"TCP:127.0.0.1:{srv.port('tcp', 'chargen')}",
                             "STDOUT"], 7400)
    assert got == chargen_stream(7400)
    line = _read_from_client(["socat", "-u", f"TCP:127.0.0.1:{srv.port('tcp', 'daytime')}",
                              "STDOUT"], 1000)
    assert DAYTIME_RE.match(line), line


# ---- well-known ports and privilege ----

WELL_KNOWN = {"echo": 7, "discard": 9, "chargen": 19, "daytime": 13, "time": 37}


def _as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@pytest.mark.parametrize("name", sorted(WELL_KNOWN))
def test_well_known_port_without_privilege_says_so(name):
    pre = _as_nobody if os.geteuid() == 0 else None
    r = subprocess.run([SOCKFLOW, "serve", "-t", "-4", name], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10, preexec_fn=pre)
    err = r.stderr.decode()
    port = WELL_KNOWN[name]
    assert r.returncode == 1, err
    assert f"bind 127.0.0.1:{port}: Permission denied" in err
    assert f"{name}:{port + 7000}" in err and "above 1023" in err
    assert len(err.strip().splitlines()) == 1


def test_several_services_in_one_process_on_well_known_ports(serve):
    if os.geteuid() != 0:
        pytest.skip("well-known ports need root")
    from svc_helpers import port_free
    busy = [p for p in WELL_KNOWN.values() if not port_free(p)]
    if busy:
        pytest.skip(f"ports {busy} are taken on 127.0.0.1")
    s = serve("-t", "-4", *WELL_KNOWN)
    assert sorted(p for _, _, p, _ in s.listeners) == sorted(WELL_KNOWN.values())
    with connect(13) as c:
        assert DAYTIME_RE.match(read_to_eof(c))
