"""`sockflow connect` as the client of real servers: nc -l, socat, Python sockets and
sockflow serve. Standard input goes to the socket and the socket to standard output,
binary-safe; exact bytes are checked on both sides."""
import random
import socket
import subprocess
import threading
import time

import pytest

from conftest import (SOCKFLOW, assert_no_sanitizer_report, free_port, have_ipv6_loopback,
                      run_sockflow, wait_listening)

ALL_BYTES = bytes(range(256))


needs_ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback (::1)")


class PyServer:
    """One Python listener on port 0 serving its clients in a thread with handler(conn,
    server). It records what each client sent and where it came from."""

    def __init__(self, handler, host="127.0.0.1", udp=False, port=0, clients=1):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp = udp
        self.sock = socket.socket(fam, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.bind((host, port))
        if not udp:
            self.sock.listen(8)
        self.sock.settimeout(20)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.received = bytearray()
        self.datagrams = []
        self.peers = []
        self.errors = []
        self.got = threading.Event()        # set on each datagram, for pacing the client
        self.thread = threading.Thread(target=self._run, args=(clients,), daemon=True)
        self.thread.start()

    def _run(self, clients):
        try:
            if self.udp:
                self.handler(self.sock, self)
                return
            for _ in range(clients):
                conn, peer = self.sock.accept()
                self.peers.append(peer)
                with conn:
                    conn.settimeout(20)
                    self.handler(conn, self)
        except Exception as e:     # reported by join()
            self.errors.append(e)

    def read_to_eof(self, conn):
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            self.received += chunk

    def join(self, timeout=20):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server thread still running"
        self.sock.close()
        assert not self.errors, self.errors


def sockflow(args, **kw):
    return run_sockflow(["connect", *args], **kw)


def started(argv, stdin=subprocess.PIPE):
    return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(p, timeout=10):
    """Output of a Popen'd sockflow connect that is expected to end by itself."""
    if p.stdin is not None and p.stdin.closed:
        p.stdin = None
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=5)
        raise
    assert_no_sanitizer_report(err)
    return p.returncode, out, err


# ---- TCP against peer tools ----

def test_to_nc_listener_both_ways(procs, tmp_path):
    port = free_port()
    reply = tmp_path / "reply"
    reply.write_bytes(b"REPLY from nc\n")
    got = tmp_path / "nc.out"
    with open(reply, "rb") as fin, open(got, "wb") as fout:
        nc = subprocess.Popen(["nc", "-l", "127.0.0.1", str(port)], stdin=fin, stdout=fout,
                              stderr=subprocess.PIPE)
    try:
        wait_listening(port)
        data = ALL_BYTES * 3 + b"end\n"
        c = procs([SOCKFLOW, "connect", "127.0.0.1", str(port)], stdin=subprocess.PIPE)
        c.p.stdin.write(data)
        c.p.stdin.flush()
        c.wait_line("REPLY from nc")
        c.p.stdin.close()       # end of input: FIN; nc sees EOF and closes
        assert c.wait(10) == 0
        assert nc.wait(10) == 0
    finally:
        if nc.poll() is None:
            nc.kill()
            nc.wait(5)
    assert c.stdout == "REPLY from nc\n"
    assert c.stderr == ""
    assert got.read_bytes() == data


def test_to_nc_listener_binary_exact(tmp_path):
    port = free_port()
    out = tmp_path / "nc.out"
    data = random.Random(11).randbytes(300000) + ALL_BYTES
    with open(out, "wb") as f:
        nc = subprocess.Popen(["nc", "-l", "127.0.0.1", str(port)], stdin=subprocess.DEVNULL,
                              stdout=f, stderr=subprocess.PIPE)
    try:
        wait_listening(port)
        r = sockflow(["127.0.0.1", str(port)], input=data)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
        assert nc.wait(10) == 0
    finally:
        if nc.poll() is None:
            nc.kill()
            nc.wait(5)
    assert out.read_bytes() == data


@pytest.mark.parametrize("peer", ["EXEC:cat", "PIPE"])
def test_to_socat_echo_one_mib(procs, peer):
    port = free_port()
    procs(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", peer])
    wait_listening(port)
    data = random.Random(12).randbytes(1 << 20)
    r = sockflow(["127.0.0.1", str(port)], input=data, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    assert r.stdout == data


def test_to_sockflow_serve(serve):
    s = serve("echo:0")
    data = b"through both ends\n" + ALL_BYTES
    r = sockflow(["127.0.0.1", str(s.port("tcp"))], input=data)
    assert (r.returncode, r.stdout, r.stderr) == (0, data, b"")


# ---- TCP against Python servers: half-close and timing ----

def test_binary_both_ways_and_half_close():
    def handler(conn, srv):
        srv.read_to_eof(conn)       # returns only when the client half-closes
        conn.sendall(b"after your FIN:" + ALL_BYTES)
    srv = PyServer(handler)
    data = bytes(reversed(ALL_BYTES)) * 100
    r = sockflow(["127.0.0.1", str(srv.port)], input=data)
    srv.join()
    assert (r.returncode, r.stderr) == (0, b"")
    assert bytes(srv.received) == data
    assert r.stdout == b"after your FIN:" + ALL_BYTES


def test_late_reply_after_end_of_input_is_printed():
    def handler(conn, srv):
        srv.read_to_eof(conn)
        time.sleep(1.5)
        conn.sendall(b"late reply\n")
    srv = PyServer(handler)
    t0 = time.monotonic()
    r = sockflow(["127.0.0.1", str(srv.port)], input=b"question\n")
    took = time.monotonic() - t0
    srv.join()
    assert (r.returncode, r.stdout, r.stderr) == (0, b"late reply\n", b"")
    assert srv.received == b"question\n"
    assert took >= 1.4


def test_quit_seconds_after_end_of_input():
    release = threading.Event()

    def handler(conn, srv):
        srv.read_to_eof(conn)
        conn.sendall(b"still here\n")
        release.wait(10)            # never closes by itself while the client runs
    srv = PyServer(handler)
    t0 = time.monotonic()
    r = sockflow(["-q", "0.5", "127.0.0.1", str(srv.port)], input=b"bye\n")
    took = time.monotonic() - t0
    release.set()
    srv.join()
    assert (r.returncode, r.stdout, r.stderr) == (0, b"still here\n", b"")
    assert srv.received == b"bye\n"
    assert 0.45 <= took < 3, took


def test_without_quit_waits_for_the_server_to_close():
    def handler(conn, srv):
        srv.read_to_eof(conn)
        time.sleep(2.5)
    srv = PyServer(handler)
    t0 = time.monotonic()
    r = sockflow(["127.0.0.1", str(srv.port)], input=b"x")
    took = time.monotonic() - t0
    srv.join()
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert took >= 2.4


def test_pipe_closed_while_the_server_reads_slowly():
    # The writer of standard input finishes and goes away while the socket is still
    # full: every byte left in the pipe must still be sent.
    def handler(conn, srv):
        while True:
            time.sleep(0.004)
            chunk = conn.recv(16384)
            if not chunk:
                return
            srv.received += chunk
    srv = PyServer(handler)
    srv.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    data = random.Random(15).randbytes(3 << 20)
    p = started([SOCKFLOW, "connect", "127.0.0.1", str(srv.port)])
    p.stdin.write(data)
    p.stdin.close()
    rc, out, err = finish(p, timeout=60)
    srv.join()
    assert (rc, out, err) == (0, b"", b"")
    assert len(srv.received) == len(data)
    assert srv.received == data


def test_regular_file_as_stdin(serve, tmp_path):
    s = serve("-t", "echo:0")
    data = random.Random(13).randbytes(1 << 20) + ALL_BYTES
    f = tmp_path / "input.bin"
    f.write_bytes(data)
    with open(f, "rb") as stdin:
        r = sockflow(["127.0.0.1", str(s.port("tcp"))], stdin=stdin, timeout=30)
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == data


def test_empty_input_half_closes_at_once():
    def handler(conn, srv):
        srv.read_to_eof(conn)
        conn.sendall(b"you sent nothing")
    srv = PyServer(handler)
    r = sockflow(["127.0.0.1", str(srv.port)], stdin=subprocess.DEVNULL)
    srv.join()
    assert (r.returncode, r.stdout, r.stderr) == (0, b"you sent nothing", b"")
    assert srv.received == b""


def test_input_sent_before_end_of_input():
    # Bytes go out as they are read, not at end of input.
    def handler(conn, srv):
        got = b""
        while got != b"ping\n":
            chunk = conn.recv(100)
            assert chunk
            got += chunk
        conn.sendall(b"pong\n")
        srv.read_to_eof(conn)
    srv = PyServer(handler)
    p = started([SOCKFLOW, "connect", "127.0.0.1", str(srv.port)])
    p.stdin.write(b"ping\n")
    p.stdin.flush()
    line = p.stdout.readline()
    p.stdin.close()
    rc, out, err = finish(p)
    srv.join()
    assert line == b"pong\n"
    assert (rc, out, err) == (0, b"", b"")


def test_server_closing_first_ends_connect():
    # Input is still open (a terminal, say), but the server is done: so is connect.
    def handler(conn, srv):
        conn.sendall(b"banner, then goodbye\n")
    srv = PyServer(handler)
    p = started([SOCKFLOW, "connect", "127.0.0.1", str(srv.port)])
    try:
        rc, out, err = finish(p, timeout=5)
    finally:
        if p.stdin and not p.stdin.closed:
            p.stdin.close()
    srv.join()
    assert (rc, out, err) == (0, b"banner, then goodbye\n", b"")


def test_source_address():
    srv = PyServer(lambda conn, s: s.read_to_eof(conn))
    r = sockflow(["-s", "127.0.0.2", "127.0.0.1", str(srv.port)], input=b"from .2")
    srv.join()
    assert (r.returncode, r.stderr) == (0, b"")
    assert srv.peers[0][0] == "127.0.0.2"
    assert srv.received == b"from .2"


def test_source_address_and_port():
    src = free_port()
    srv = PyServer(lambda conn, s: s.read_to_eof(conn))
    r = sockflow(["-s", f"127.0.0.1:{src}", "127.0.0.1", str(srv.port)], input=b"p")
    srv.join()
    assert (r.returncode, r.stderr) == (0, b"")
    assert srv.peers[0] == ("127.0.0.1", src)


@needs_ipv6
def test_ipv6_loopback():
    def handler(conn, srv):
        srv.read_to_eof(conn)
        conn.sendall(b"six:" + bytes(srv.received))
    srv = PyServer(handler, host="::1")
    r = sockflow(["::1", str(srv.port)], input=ALL_BYTES)
    srv.join()
    assert (r.returncode, r.stdout, r.stderr) == (0, b"six:" + ALL_BYTES, b"")
    assert srv.peers[0][0] == "::1"


@needs_ipv6
def test_ipv6_to_sockflow_serve(serve):
    s = serve("echo:0")
    r = sockflow(["-6", "::1", str(s.port("tcp", host="::1"))], input=b"v6 echo")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"v6 echo", b"")


def test_dash_4_localhost():
    srv = PyServer(lambda conn, s: s.read_to_eof(conn))
    r = sockflow(["-4", "localhost", str(srv.port)], input=b"four")
    srv.join()
    assert (r.returncode, r.stderr) == (0, b"")
    assert srv.peers[0][0] == "127.0.0.1" and srv.received == b"four"


@needs_ipv6
def test_dash_6_localhost():
    try:
        socket.getaddrinfo("localhost", 80, socket.AF_INET6, socket.SOCK_STREAM)
        v6_localhost = True
    except socket.gaierror as e:
        v6_localhost, why = False, e.strerror
    if not v6_localhost:
        # /etc/hosts names localhost for IPv4 only: -6 must not fall back to IPv4.
        port = free_port()
        r = sockflow(["-6", "localhost", str(port)], input=b"six")
        assert r.returncode == 1
        assert r.stderr == f"sockflow: resolve localhost:{port}: {why}\n".encode()
        return
    srv = PyServer(lambda conn, s: s.read_to_eof(conn), host="::1")
    r = sockflow(["-6", "localhost", str(srv.port)], input=b"six")
    srv.join()
    assert (r.returncode, r.stderr) == (0, b"")
    assert srv.peers[0][0] == "::1" and srv.received == b"six"


def test_reader_of_output_going_away_ends_quietly(serve):
    s = serve("-t", "echo:0")
    data = random.Random(14).randbytes(4 << 20)
    p = started([SOCKFLOW, "connect", "127.0.0.1", str(s.port("tcp"))])
    p.stdout.close()            # nobody reads what comes back
    try:
        p.stdin.write(data)
        p.stdin.close()
    except BrokenPipeError:
        pass
    assert p.wait(15) == 0
    err = p.stderr.read()
    p.stderr.close()
    assert_no_sanitizer_report(err)
    assert err == b""


# ---- UDP ----

def test_udp_each_read_is_one_datagram():
    def handler(sock, srv):
        for _ in range(3):
            data, peer = sock.recvfrom(70000)
            srv.datagrams.append(data)
            srv.peers.append(peer)
            sock.sendto(b"R:" + data, peer)
            srv.got.set()
    srv = PyServer(handler, udp=True)
    p = started([SOCKFLOW, "connect", "-u", "-w", "1", "127.0.0.1", str(srv.port)])
    for chunk in (b"one", ALL_BYTES, b"three\n"):
        srv.got.clear()
        p.stdin.write(chunk)
        p.stdin.flush()
        assert srv.got.wait(5), "datagram not received"
    t0 = time.monotonic()
    p.stdin.close()
    rc, out, err = finish(p)
    took = time.monotonic() - t0
    srv.join()
    assert srv.datagrams == [b"one", ALL_BYTES, b"three\n"]
    assert len(set(srv.peers)) == 1
    assert (rc, out, err) == (0, b"R:one" + b"R:" + ALL_BYTES + b"R:three\n", b"")
    assert 0.9 <= took < 3, took


def test_udp_replies_printed_until_wait_seconds_of_silence():
    def handler(sock, srv):
        data, peer = sock.recvfrom(70000)
        srv.datagrams.append(data)
        for i in range(3):
            time.sleep(0.6)                 # each gap shorter than -w 1
            sock.sendto(b"reply %d\n" % i, peer)
    srv = PyServer(handler, udp=True)
    t0 = time.monotonic()
    r = sockflow(["-u", "-w", "1", "127.0.0.1", str(srv.port)], input=b"go")
    took = time.monotonic() - t0
    srv.join()
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == b"reply 0\nreply 1\nreply 2\n"
    assert 2.7 <= took < 5, took


def test_udp_no_reply_ends_after_wait():
    def handler(sock, srv):
        srv.datagrams.append(sock.recvfrom(70000)[0])
    srv = PyServer(handler, udp=True)
    t0 = time.monotonic()
    r = sockflow(["-u", "-w", "0.5", "127.0.0.1", str(srv.port)], input=b"anyone?")
    took = time.monotonic() - t0
    srv.join()
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert srv.datagrams == [b"anyone?"]
    assert 0.4 <= took < 3, took


def test_udp_input_larger_than_a_datagram(tmp_path):
    # A file (or a full pipe) reads in pieces bigger than UDP can carry: each datagram is
    # at most the largest IPv4 payload, 65507 bytes, and all of the input goes out.
    def handler(sock, srv):
        while sum(map(len, srv.datagrams)) < len(data):
            d, peer = sock.recvfrom(70000)
            srv.datagrams.append(d)
            sock.sendto(b"%d;" % len(d), peer)
    data = random.Random(16).randbytes(150000)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    srv = PyServer(handler, udp=True)
    srv.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    with open(f, "rb") as stdin:
        r = sockflow(["-u", "-w", "0.5", "127.0.0.1", str(srv.port)], stdin=stdin)
    srv.join()
    assert (r.returncode, r.stderr) == (0, b"")
    assert b"".join(srv.datagrams) == data
    assert [len(d) for d in srv.datagrams] == [65507, 65507, 150000 - 2 * 65507]
    assert r.stdout == b"65507;65507;%d;" % (150000 - 2 * 65507)


def test_udp_to_sockflow_serve(serve):
    s = serve("-u", "echo:0")
    r = sockflow(["-u", "-w", "0.5", "127.0.0.1", str(s.port("udp"))], input=ALL_BYTES)
    assert (r.returncode, r.stdout, r.stderr) == (0, ALL_BYTES, b"")


def test_udp_to_nc_listener(procs):
    port = free_port("udp")
    nc = procs(["nc", "-u", "-l", "127.0.0.1", str(port)])
    wait_listening(port, "udp")
    r = sockflow(["-u", "-w", "0.3", "127.0.0.1", str(port)], input=b"to nc over udp\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert nc.wait_line("^to nc over udp$") == "to nc over udp\n"


def test_udp_to_socat_echo(procs):
    port = free_port("udp")
    procs(["socat", f"UDP-RECVFROM:{port},bind=127.0.0.1,fork,reuseaddr", "PIPE"])
    wait_listening(port, "udp")
    r = sockflow(["-u", "-w", "1", "127.0.0.1", str(port)], input=ALL_BYTES)
    assert (r.returncode, r.stdout, r.stderr) == (0, ALL_BYTES, b"")


def test_udp_source_address():
    def handler(sock, srv):
        data, peer = sock.recvfrom(100)
        srv.peers.append(peer)
        sock.sendto(data, peer)
    srv = PyServer(handler, udp=True)
    r = sockflow(["-u", "-w", "0.5", "-s", "127.0.0.2", "127.0.0.1", str(srv.port)],
                 input=b"src")
    srv.join()
    assert (r.returncode, r.stdout, r.stderr) == (0, b"src", b"")
    assert srv.peers[0][0] == "127.0.0.2"


@needs_ipv6
def test_udp_ipv6(serve):
    s = serve("-u", "echo:0")
    r = sockflow(["-u", "-w", "0.5", "::1", str(s.port("udp", host="::1"))], input=b"udp6")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"udp6", b"")

