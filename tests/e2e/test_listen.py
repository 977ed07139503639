"""`sockflow listen` as nc -l, nc -lk, ncat --broker and nc -lu: real clients (nc, ncat,
socat, Python, sockflow connect), exact bytes both ways, half-close, signals."""
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SOCKFLOW, free_port, have_ipv6_loopback
from listen_helpers import exchange, listen, run_to_end  # noqa: F401 (listen: a fixture)

ALL_BYTES = bytes(range(256))
needs_ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback (::1)")


def receive(addr, family=socket.AF_INET, timeout=10.0):
    """Connect and read to EOF, then close: the listener's input, whole."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(addr)
        got = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return bytes(got)
            got += chunk


def client_argv(tool, port, host="127.0.0.1"):
    return {
        "nc": ["nc", "-N", host, str(port)],
        "ncat": ["ncat", host, str(port)],
        "socat": ["socat", "-t", "5", "-", f"TCP:{host}:{port}"],
        "sockflow": [SOCKFLOW, "connect", host, str(port)],
    }[tool]



@pytest.mark.parametrize("tool", ["nc", "ncat", "socat", "sockflow", "python"])
def test_client_both_ways(listen, tool):
    if tool != "python" and tool != "sockflow" and shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (tests/deps.sh installs it)")
    to_client = b"from the listener\n" + ALL_BYTES
    to_server = b"from " + tool.encode() + b"\n" + ALL_BYTES
    lst = listen("0", stdin=to_client).started()
    assert lst.addr.startswith("127.0.0.1:")       # loopback unless told otherwise
    if tool == "python":
        got = exchange(("127.0.0.1", lst.port), to_server)
    else:
        r = run_to_end(client_argv(tool, lst.port), input=to_server)
        assert r.returncode == 0, r.stderr
        got = r.stdout
    assert got == to_client
    assert lst.wait(10) == 0        # the client's FIN ends the output; both done: exit
    assert lst.stdout == to_server


def test_binary_1mib_both_ways(listen):
    """Both directions at once; the client sends its FIN once it has all of ours."""
    rnd = random.Random(9)
    down, up = rnd.randbytes(1 << 20), rnd.randbytes(1 << 20)
    lst = listen("0", stdin=down).started()
    with socket.create_connection(("127.0.0.1", lst.port), timeout=20) as s:
        sender = threading.Thread(target=s.sendall, args=(up,))
        sender.start()
        got = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        sender.join(20)
        s.shutdown(socket.SHUT_WR)
    assert bytes(got) == down
    assert lst.wait(20) == 0
    assert lst.stdout == up


def test_client_fin_first_input_still_sent(listen):
    """The client sends its megabyte and FIN at once; ours still goes out whole."""
    rnd = random.Random(10)
    down, up = rnd.randbytes(1 << 20), rnd.randbytes(1 << 20)
    lst = listen("0", stdin=down).started()
    got = exchange(("127.0.0.1", lst.port), up, timeout=20)
    assert lst.wait(20) == 0
    assert lst.stdout == up
    assert got == down


def test_end_of_input_sends_fin_client_keeps_talking(listen):
    """Our input ends at once: the client sees EOF, yet what it sends after still comes
    out (half-close, not close)."""
    lst = listen("0", stdin=b"").started()
    with socket.create_connection(("127.0.0.1", lst.port), timeout=10) as s:
        assert s.recv(10) == b""                    # FIN from the listener
        s.sendall(b"still heard after your FIN\n")
        s.shutdown(socket.SHUT_WR)
        assert lst.wait(10) == 0
    assert lst.stdout == b"still heard after your FIN\n"


def test_keep_open_three_clients_in_turn(listen):
    lst = listen("-k", "0").started()
    for i in range(3):
        msg = f"client {i}\n".encode() * (i + 1)
        assert exchange(("127.0.0.1", lst.port), msg) == b""
        lst.wait_out(sum(len(f"client {j}\n") * (j + 1) for j in range(i + 1)))
        assert lst.alive()
    lst.signal(signal.SIGTERM)
    assert lst.wait(10) == 0
    assert lst.stdout == b"".join(f"client {i}\n".encode() * (i + 1) for i in range(3))


def test_keep_open_one_at_a_time(listen):
    """-k serves one client at a time: a second one waits until the first leaves."""
    lst = listen("-k", "0").started()
    a = socket.create_connection(("127.0.0.1", lst.port), timeout=10)
    b = socket.create_connection(("127.0.0.1", lst.port), timeout=10)
    b.sendall(b"second\n")
    a.sendall(b"first\n")
    lst.wait_out(6)
    time.sleep(0.3)
    assert lst.stdout == b"first\n"                 # b waits in the accept queue
    a.close()
    lst.wait_out(13)
    b.close()
    assert lst.stdout == b"first\nsecond\n"


def test_broker_three_clients(listen):
    lst = listen("--broker", "0").started()
    cs = [socket.create_connection(("127.0.0.1", lst.port), timeout=10) for _ in range(3)]
    try:
        time.sleep(0.3)         # all three joined
        for i, c in enumerate(cs):
            msg = f"<{i}>".encode() * 1000 + ALL_BYTES
            c.sendall(msg)
            for j, other in enumerate(cs):
                if j == i:
                    continue
                got = bytearray()
                while len(got) < len(msg):
                    got += other.recv(len(msg) - len(got))
                assert bytes(got) == msg        # raw bytes, no prefixes
        # the sender hears nothing of its own
        cs[0].settimeout(0.3)
        with pytest.raises(socket.timeout):
            cs[0].recv(1)
    finally:
        for c in cs:
            c.close()
    time.sleep(0.2)
    lst.signal(signal.SIGTERM)
    assert lst.wait(10) == 0


def test_udp_answers_the_last_sender(listen):
    lst = listen("-u", "0", stdin=None).started()
    assert lst.kind == "udp"
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (a, b):
            s.settimeout(5)
        a.sendto(b"from a", ("127.0.0.1", lst.port))
        lst.wait_out(6)
        lst.p.stdin.write(b"to a")
        lst.p.stdin.flush()
        assert a.recvfrom(100)[0] == b"to a"
        b.sendto(b"from b", ("127.0.0.1", lst.port))
        lst.wait_out(12)
        lst.p.stdin.write(b"to b")
        lst.p.stdin.flush()
        assert b.recvfrom(100)[0] == b"to b"
        assert lst.stdout == b"from afrom b"
    finally:
        a.close()
        b.close()
    lst.signal(signal.SIGHUP)
    assert lst.wait(10) == 0


def test_udp_with_nc_client(listen, tmp_path):
    lst = listen("-u", "0", stdin=None).started()
    nc = subprocess.Popen(["nc", "-u", "127.0.0.1", str(lst.port)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        nc.stdin.write(b"hello over udp\n")
        nc.stdin.flush()
        lst.wait_out(15)
        lst.p.stdin.write(b"reply\n")
        lst.p.stdin.flush()
        assert nc.stdout.readline() == b"reply\n"
    finally:
        nc.kill()
        nc.wait(5)
    assert lst.stdout == b"hello over udp\n"


@needs_ipv6
def test_ipv6_and_address_forms(listen):
    lst = listen("-6", "0", stdin=b"six\n").started()
    assert lst.addr.startswith("[::1]:")
    assert receive(("::1", lst.port), socket.AF_INET6) == b"six\n"
    assert lst.wait(10) == 0
    lst = listen("[::1]:0", stdin=b"bracketed\n").started()
    assert receive(("::1", lst.port), socket.AF_INET6) == b"bracketed\n"
    lst = listen("-l", "::1", "0", stdin=b"dash-l\n").started()
    assert receive(("::1", lst.port), socket.AF_INET6) == b"dash-l\n"


def test_wildcard_warns_loopback_does_not(listen):
    lst = listen("-l", "0.0.0.0", "0", stdin=b"").started()
    assert lst.addr.startswith("0.0.0.0:")
    warn = [l for l in lst.err_lines if "warning" in l]
    assert len(warn) == 1 and "other hosts can reach it" in warn[0], lst.stderr
    quiet = listen("127.0.0.1:0", stdin=b"").started()
    time.sleep(0.1)
    assert "warning" not in quiet.stderr


def test_sighup_drains_the_client(listen):
    """SIGHUP (a closed terminal) lets the present client finish rather than cut it;
    a second signal ends at once."""
    lst = listen("-k", "0").started()
    s = socket.create_connection(("127.0.0.1", lst.port), timeout=10)
    s.sendall(b"before\n")
    lst.wait_out(7)
    lst.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert lst.alive()
    s.sendall(b"after the signal\n")
    lst.wait_out(24)
    s.close()
    assert lst.wait(10) == 0
    assert lst.stdout == b"before\nafter the signal\n"
    # nothing listens any more
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", lst.port), timeout=2)
    # twice: at once
    lst2 = listen("-k", "0").started()
    s2 = socket.create_connection(("127.0.0.1", lst2.port), timeout=10)
    s2.sendall(b"x")
    lst2.wait_out(1)
    lst2.signal(signal.SIGTERM)
    time.sleep(0.2)
    assert lst2.alive()
    lst2.signal(signal.SIGHUP)
    assert lst2.wait(5) == 0
    s2.close()


def test_trace_shows_accept_and_peer(listen):
    lst = listen("--trace", "0", stdin=b"").started()
    receive(("127.0.0.1", lst.port))
    assert lst.wait(10) == 0
    err = lst.stderr
    for call in ("socket", "bind", "listen", "accept4", "read", "shutdown", "close"):
        assert f" {call} " in err, err
    assert "peer=127.0.0.1:" in err
    assert "LISTEN" in err and "ESTABLISHED" in err


@pytest.mark.parametrize("args,msg", [
    ([], "expected [ADDR:]PORT"),
    (["--broker", "-u", "0"], "--broker"),
    (["--inetd"], "--inetd"),
    (["-u", "-e", "cat", "0"], "-e/-c"),
    (["--allow", "10.0.0.0/33", "0"], "--allow 10.0.0.0/33: prefix longer than 32"),
    (["--deny", "nosuch", "0"], "--deny nosuch: not a numeric IPv4 or IPv6 address"),
    (["--max-conns", "0", "0"], "--max-conns 0"),
    (["-e", "cat", "-c", "cat", "0"], "-e and -c"),
    (["70000"], "port 70000"),
    (["1", "2"], "expected one"),
    (["--nosuch", "0"], "unknown option --nosuch"),
    (["unix:"], "address unix:: empty path"),
])
def test_usage_errors(args, msg):
    r = run_to_end([SOCKFLOW, "listen", *args])
    assert r.returncode == 2, r
    assert msg in r.stderr.decode(), r.stderr
    assert r.stderr.decode().startswith("sockflow listen: ")


def test_runtime_errors(listen, tmp_path):
    lst = listen("0", stdin=b"").started()
    r = run_to_end([SOCKFLOW, "listen", str(lst.port)])
    assert r.returncode == 1
    assert r.stderr.decode() == (f"sockflow: bind 127.0.0.1:{lst.port}: Address already in use "
                                 "(another server is running there)\n")
    r = run_to_end([SOCKFLOW, "listen", "--allowfile", str(tmp_path / "none"), "0"])
    assert r.returncode == 1
    assert "--allowfile " in r.stderr.decode() and "No such file or directory" in r.stderr.decode()
    r = run_to_end([SOCKFLOW, "listen", "--user", "nosuchuser", "0"])
    assert r.returncode in (1, 2)
    assert "--user nosuchuser: no such user" in r.stderr.decode()


def test_udp_trace_shows_the_source(listen):
    # JSON: one line an event (the text trace wraps long arguments)
    lst = listen("-u", "--trace=json", "0", stdin=None).started()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        src = s.getsockname()[1]
        s.sendto(b"traced", ("127.0.0.1", lst.port))
        lst.wait_out(6)
    lst.wait_err(rf'"call":"recvfrom".*from=127\.0\.0\.1:{src}\b')
    lst.signal(signal.SIGTERM)
    assert lst.wait(5) == 0
