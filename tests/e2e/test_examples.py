"""The four example programs (examples/*.c, built by `make examples`): each server on
port 0 with each client against it, and each against sockflow, exact output."""
import os
import re
import subprocess

import pytest

from conftest import (EXAMPLES, assert_no_sanitizer_report, free_port, proc_net_sockets,
                      run_sockflow, split_addr)

NAMES = ("tcp_server", "tcp_client", "udp_server", "udp_client")


@pytest.fixture
def ex():
    """Paths of the example binaries; the test is skipped when they are not built."""
    paths = {n: os.path.join(EXAMPLES, n) for n in NAMES}
    missing = [n for n, p in paths.items() if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(f"examples not built in {EXAMPLES} ({', '.join(missing)}): make examples")
    return paths


def start_server(procs, path, proto):
    """Start an example server on port 0; returns (proc, port) from its listening line."""
    p = procs([path, "0"])
    line = p.wait_line(rf"^listening on {proto} ")
    m = re.fullmatch(rf"listening on {proto} (127\.0\.0\.1:\d+)\n", line)
    assert m, line
    host, port = split_addr(m.group(1))
    assert host == "127.0.0.1" and 0 < port < 65536
    return p, port


def run_client(path, *args, timeout=20):
    r = subprocess.run([path, *map(str, args)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    assert_no_sanitizer_report(r.stderr, os.path.basename(path))
    return r


def stop_clean(p):
    p.stop()
    assert_no_sanitizer_report(p.stderr, p.argv[0])
    assert p.stderr == ""


MESSAGES = ["hello, sockflow", "two words  and  spaces\ttab", "caf\u00e9 \u2603 \u00ff", "x" * 3000]


def test_tcp_server_and_client(ex, procs):
    srv, port = start_server(procs, ex["tcp_server"], "tcp")
    # One client at a time, as in the textbook; each gets its own reply.
    for msg in MESSAGES:
        r = run_client(ex["tcp_client"], "127.0.0.1", port, msg)
        assert (r.returncode, r.stdout, r.stderr) == (0, msg.encode(), b"")
    stop_clean(srv)


def test_udp_server_and_client(ex, procs):
    srv, port = start_server(procs, ex["udp_server"], "udp")
    for msg in MESSAGES:
        r = run_client(ex["udp_client"], "127.0.0.1", port, msg)
        assert (r.returncode, r.stdout, r.stderr) == (0, msg.encode(), b"")
    stop_clean(srv)


def test_examples_listen_on_loopback_only(ex, procs):
    tcp, tport = start_server(procs, ex["tcp_server"], "tcp")
    udp, uport = start_server(procs, ex["udp_server"], "udp")
    assert [(t, h) for t, h, _, _ in proc_net_sockets("tcp", tport, "0A")] == [("tcp", "0100007F")]
    assert [(t, h) for t, h, _, _ in proc_net_sockets("udp", uport, "07")] == [("udp", "0100007F")]
    stop_clean(tcp)
    stop_clean(udp)


def test_tcp_client_against_sockflow_serve(ex, serve):
    s = serve("-t", "echo:0")
    r = run_client(ex["tcp_client"], "127.0.0.1", s.port("tcp"), "to sockflow")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"to sockflow", b"")


def test_udp_client_against_sockflow_serve(ex, serve):
    s = serve("-u", "echo:0")
    r = run_client(ex["udp_client"], "127.0.0.1", s.port("udp"), "to sockflow over udp")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"to sockflow over udp", b"")


def test_sockflow_connect_against_tcp_server(ex, procs):
    srv, port = start_server(procs, ex["tcp_server"], "tcp")
    data = bytes(range(256)) * 64
    r = run_sockflow(["connect", "127.0.0.1", str(port)], input=data)
    assert (r.returncode, r.stdout, r.stderr) == (0, data, b"")
    stop_clean(srv)


def test_sockflow_connect_against_udp_server(ex, procs):
    srv, port = start_server(procs, ex["udp_server"], "udp")
    data = bytes(range(256))
    r = run_sockflow(["connect", "-u", "-w", "0.5", "127.0.0.1", str(port)], input=data)
    assert (r.returncode, r.stdout, r.stderr) == (0, data, b"")
    stop_clean(srv)


def test_tcp_client_refused(ex):
    port = free_port()
    r = run_client(ex["tcp_client"], "127.0.0.1", port, "anyone?")
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr == f"tcp_client: connect 127.0.0.1:{port}: Connection refused\n".encode()


def test_udp_client_refused(ex):
    port = free_port("udp")
    r = run_client(ex["udp_client"], "127.0.0.1", port, "anyone?")
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr == f"udp_client: recv 127.0.0.1:{port}: Connection refused\n".encode()


@pytest.mark.parametrize("name", ["tcp_client", "udp_client"])
def test_client_usage(ex, name):
    r = run_client(ex[name])
    assert (r.returncode, r.stdout) == (2, b"")
    assert r.stderr == f"usage: {name} HOST PORT MESSAGE\n".encode()

