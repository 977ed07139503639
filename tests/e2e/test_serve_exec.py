"""`sockflow serve 'exec:PORT=PROGRAM ARGS'`: inetd's nowait services — a program per
client, concurrently, each reaped with its exit logged, bounded by --max-conns,
drained on SIGTERM, hung up when the drain time is over."""
import re
import signal
import socket
import time

import pytest

from conftest import run_sockflow
from listen_helpers import child_states, closed_at_once, exchange, fill_until_blocked


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def children(pid):
    return child_states(pid)


def test_exec_rev_concurrently_and_reaped(serve):
    s = serve("-t", "-4", "exec:0=rev")
    port = s.port("tcp")
    held = socket.create_connection(("127.0.0.1", port), timeout=5)     # one stays open
    try:
        held.sendall(b"first\n")
        for i in range(3):
            assert exchange(("127.0.0.1", port), b"line %d\n" % i) == (b"line %d\n" % i)[-2::-1] + b"\n"
        held.shutdown(socket.SHUT_WR)
        assert held.recv(100) == b"tsrif\n"
    finally:
        held.close()
    wait_for(lambda: s.stderr.count("exited 0") == 4, what="four exits logged")
    assert re.search(r"exec #\d+ 127\.0\.0\.1:\d+: closed: program \d+ exited 0", s.stderr)
    wait_for(lambda: not children(s.pid), what="every program reaped")


def test_exec_program_that_exits_at_once_and_one_that_never_reads(serve, tmp_path):
    flag = tmp_path / "f"
    s = serve("-t", "-4", f"exec:0=sh {tmp_path}/prog")
    (tmp_path / "prog").write_text(f"[ -e {flag} ] && exec cat\ntouch {flag}\nexec sleep 30\n")
    port = s.port("tcp")
    stuck = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        wait_for(flag.exists, what="the program that never reads")
        assert fill_until_blocked(stuck, b"z") > 0
        assert exchange(("127.0.0.1", port), b"served\n", timeout=5) == b"served\n"
    finally:
        stuck.close()
    s2 = serve("-t", "-4", "exec:0=true")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", s2.port("tcp")), timeout=5) as c:
            c.settimeout(5)
            assert c.recv(1) == b""
    wait_for(lambda: s2.stderr.count("program") == 3, what="three exits")
    assert "Z" not in children(s2.pid).values()


def test_exec_bounded_by_max_conns(serve):
    s = serve("-t", "-4", "--max-conns", "1", "exec:0=cat")
    port = s.port("tcp")
    a = socket.create_connection(("127.0.0.1", port), timeout=5)
    a.sendall(b"a")
    assert a.recv(1) == b"a"
    assert closed_at_once(port, ("127.0.0.1", 0))
    a.close()
    wait_for(lambda: "exited 0" in s.stderr, what="the first program to end")
    assert exchange(("127.0.0.1", port), b"b") == b"b"


def test_exec_drain_then_hang_up(serve):
    s = serve("-t", "-4", "--drain-timeout", "1", "exec:0=cat")
    port = s.port("tcp")
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"1")
    assert c.recv(1) == b"1"
    s.signal(signal.SIGTERM)
    time.sleep(0.3)
    c.sendall(b"2")             # the program goes on while the server drains
    assert c.recv(1) == b"2"
    assert s.wait(5) == 0       # drain time up: the program is hung up, the server ends
    c.settimeout(5)
    try:
        assert c.recv(1) == b""
    except ConnectionResetError:
        pass
    c.close()


@pytest.mark.parametrize("spec,msg", [
    ("exec:0", "expected exec:PORT=PROGRAM"),
    ("exec:=cat", "expected exec:PORT=PROGRAM"),
    ("exec:70000=cat", "port 70000"),
    ("exec:0=", "name the program"),
])
def test_exec_spec_errors(spec, msg):
    r = run_sockflow(["serve", spec])
    assert r.returncode in (1, 2)
    assert msg in r.stderr.decode(), r.stderr
