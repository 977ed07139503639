"""Socket activation: `systemd-socket-activate -l ADDR sockflow serve ...` and
`... sockflow listen`: the passed sockets (LISTEN_FDS) are served instead of binding,
matched to services by name (--fdname) or order; TCP, UDP and Unix."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import SOCKFLOW, assert_no_sanitizer_report, free_port, wait_listening
from listen_helpers import exchange

pytestmark = pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                                reason="systemd-socket-activate not installed (Debian "
                                       "package systemd; tests/deps.sh installs it)")


class Activated:
    def __init__(self, sa_args, cmd):
        self.p = subprocess.Popen(["systemd-socket-activate", *sa_args, SOCKFLOW, *cmd],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)

    def stop(self, signo=signal.SIGTERM, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(signo)
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate(timeout=5)
        assert_no_sanitizer_report(err)
        return self.p.returncode, out.decode(), err.decode()


@pytest.fixture
def activate():
    started = []

    def start(sa_args, cmd):
        a = Activated(sa_args, cmd)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop(timeout=5)


def wait_path(path, timeout=5):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_serve_echo_tcp(activate):
    port = free_port()
    a = activate(["-l", f"127.0.0.1:{port}"], ["serve", "echo"])
    wait_listening(port)
    for i in range(3):      # one process for every client: the socket was passed, not bound
        assert exchange(("127.0.0.1", port), b"activated %d\n" % i) == b"activated %d\n" % i
    rc, out, err = a.stop()
    assert f"listening on tcp 127.0.0.1:{port} (echo)" in out
    assert err.count("Execing") == 1, err


def test_serve_by_name_and_order(activate):
    p1, p2 = free_port(), free_port()
    # names in the other order than the services: matched by name
    a = activate(["-l", f"127.0.0.1:{p1}", "-l", f"127.0.0.1:{p2}", "--fdname", "daytime:echo"],
                 ["serve", "echo", "daytime"])
    wait_listening(p2)
    assert exchange(("127.0.0.1", p2), b"named\n") == b"named\n"
    assert exchange(("127.0.0.1", p1), b"").endswith(b"\r\n")     # daytime
    a.stop()
    # unnamed: in order
    p3, p4 = free_port(), free_port()
    b = activate(["-l", f"127.0.0.1:{p3}", "-l", f"127.0.0.1:{p4}"],
                 ["serve", "echo", "discard"])
    wait_listening(p3)
    assert exchange(("127.0.0.1", p3), b"first\n") == b"first\n"
    assert exchange(("127.0.0.1", p4), b"dropped\n") == b""
    b.stop()


def test_serve_echo_udp(activate):
    port = free_port("udp")
    a = activate(["--datagram", "-l", f"127.0.0.1:{port}"], ["serve", "echo"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        reply, deadline = None, time.monotonic() + 10
        while reply is None and time.monotonic() < deadline:
            s.sendto(b"udp activated", ("127.0.0.1", port))
            try:
                reply = s.recvfrom(100)[0]
            except socket.timeout:
                pass
    assert reply == b"udp activated"
    rc, out, err = a.stop()
    assert f"listening on udp 127.0.0.1:{port} (echo)" in out


def test_serve_echo_unix(activate, tmp_path):
    path = f"/tmp/sf-act-{os.getpid()}.sock"
    a = activate(["-l", path], ["serve", "echo"])
    try:
        wait_path(path)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"unix activated\n")
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b"unix activated\n"
        rc, out, err = a.stop()
        assert f"listening on unix-stream unix:{path} (echo)" in out
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_serve_echo_unix_datagram(activate):
    """A passed Unix datagram socket: answered to the sender's name (the UDP guard's
    port rules would drop a Unix sender, which has no port)."""
    path = f"/tmp/sf-actd-{os.getpid()}.sock"
    client = f"/tmp/sf-actd-{os.getpid()}.client"
    a = activate(["--datagram", "-l", path], ["serve", "echo"])
    try:
        wait_path(path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.bind(client)
            s.settimeout(1)
            reply, deadline = None, time.monotonic() + 10
            while reply is None and time.monotonic() < deadline:
                s.sendto(b"unix datagram activated", path)
                try:
                    reply = s.recvfrom(100)[0]
                except socket.timeout:
                    pass
        assert reply == b"unix datagram activated"
        rc, out, err = a.stop()
        assert f"listening on unix-dgram unix:{path} (echo)" in out
    finally:
        for p in (path, client):
            if os.path.exists(p):
                os.unlink(p)


def test_serve_exec_on_passed_sockets(activate):
    """exec:PORT=PROG is matched to a passed socket as a built-in service is: in order,
    and by name (exec) beside another service; each client gets its own program."""
    port = free_port()
    a = activate(["-l", f"127.0.0.1:{port}"], ["serve", f"exec:{port}=rev"])
    wait_listening(port)
    for i in range(3):
        assert exchange(("127.0.0.1", port), b"stressed %d\n" % i) == b"%d desserts\n" % i
    rc, out, err = a.stop()
    assert f"listening on tcp 127.0.0.1:{port} (exec)" in out
    assert err.count("Execing") == 1, err
    p1, p2 = free_port(), free_port()
    b = activate(["-l", f"127.0.0.1:{p1}", "-l", f"127.0.0.1:{p2}", "--fdname", "exec:echo"],
                 ["serve", "echo", f"exec:{p1}=rev"])
    wait_listening(p2)
    assert exchange(("127.0.0.1", p1), b"by name\n") == b"eman yb\n"
    assert exchange(("127.0.0.1", p2), b"echoed\n") == b"echoed\n"
    b.stop()


def test_listen_takes_the_passed_socket(activate):
    port = free_port()
    a = activate(["-l", f"127.0.0.1:{port}"], ["listen", "-e", "rev"])
    wait_listening(port)
    assert exchange(("127.0.0.1", port), b"abc\n") == b"cba\n"
    rc, out, err = a.stop()
    assert f"listening on tcp 127.0.0.1:{port}" in err


def test_too_many_sockets_named_badly(activate):
    p1, p2 = free_port(), free_port()
    a = activate(["-l", f"127.0.0.1:{p1}", "-l", f"127.0.0.1:{p2}"], ["serve", "echo"])
    wait_listening(p1)
    with socket.create_connection(("127.0.0.1", p1), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"x")
        try:
            s.recv(1)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while a.p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    rc, out, err = a.stop()
    assert "LISTEN_FDS: 2 sockets for 1 services" in err, err


def test_serve_inetd_one_connection_nothing_printed_on_it(activate):
    """--inetd: the connection on standard input gets the service's bytes only (no
    'listening on' line, no log line), and each connection is its own process."""
    port = free_port()
    a = activate(["--inetd", "-a", "-l", f"127.0.0.1:{port}"], ["serve", "--inetd", "echo"])
    wait_listening(port)
    data = bytes(range(256)) * 64
    for _ in range(2):
        assert exchange(("127.0.0.1", port), data) == data
    rc, out, err = a.stop()
    assert err.count("Spawned") == 2, err


def test_serve_inetd_deny_and_usage(activate):
    port = free_port()
    a = activate(["--inetd", "-a", "-l", f"127.0.0.1:{port}"],
                 ["serve", "--inetd", "--deny", "127.0.0.0/8", "echo"])
    wait_listening(port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"nope")
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
    a.stop()
    r = subprocess.run([SOCKFLOW, "serve", "--inetd", "echo", "discard"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    assert r.returncode == 2 and b"--inetd: name one service" in r.stderr
    r = subprocess.run([SOCKFLOW, "serve", "--inetd", "echo"], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    assert r.returncode == 1
    assert b"--inetd: standard input is not a connected stream socket" in r.stderr
