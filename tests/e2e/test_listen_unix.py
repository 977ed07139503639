"""Unix domain sockets: `sockflow listen unix:/path` and `unix:@name` (stream and
datagram) with socat, nc -U, Python and sockflow connect; a stale socket file; the file
removed on exit; the trace says AF_UNIX and shows no TCP state."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import SOCKFLOW, assert_no_sanitizer_report
from listen_helpers import listen, run_to_end  # noqa: F401 (listen: a fixture)



@pytest.fixture
def sockdir(tmp_path):
    # sun_path holds 107 bytes: keep the paths short whatever pytest's tmp_path is
    d = f"/tmp/sf-{os.getpid()}-{time.monotonic_ns() % 100000}"
    os.mkdir(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def unix_exchange(path, data, timeout=10):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk


@pytest.mark.parametrize("tool", ["socat", "nc", "sockflow", "python"])
def test_stream_clients(listen, sockdir, tool):
    path = f"{sockdir}/s"
    lst = listen(f"unix:{path}", stdin=b"to the client\n").started()
    assert (lst.kind, lst.addr) == ("unix-stream", f"unix:{path}")
    data = b"over a unix socket\n" + bytes(range(256))
    if tool == "python":
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            got = b""
            while len(got) < 14:
                got += s.recv(100)
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while True:
                chunk = s.recv(100)
                if not chunk:
                    break
                got += chunk
    else:
        argv = {"socat": ["socat", "-t", "2", "-", f"UNIX-CONNECT:{path}"],
                "nc": ["nc", "-N", "-U", path],
                "sockflow": [SOCKFLOW, "connect", f"unix:{path}"]}[tool]
        r = run_to_end(argv, input=data)
        assert r.returncode == 0, r.stderr
        got = r.stdout
    assert got == b"to the client\n"
    assert lst.wait(10) == 0
    assert lst.stdout == data
    assert not os.path.exists(path)         # removed on a clean exit


def test_abstract_name(listen):
    name = f"sockflow-test-{os.getpid()}"
    lst = listen(f"unix:@{name}", "-e", "rev").started()
    assert lst.addr == f"unix:@{name}"
    r = run_to_end(["socat", "-t", "2", "-", f"ABSTRACT-CONNECT:{name}"], input=b"abstract\n")
    assert r.stdout == b"tcartsba\n"
    assert lst.wait(10) == 0


def test_exec_over_unix_says_proto_unix(listen, sockdir):
    path = f"{sockdir}/e"
    lst = listen("-k", "-c", 'echo "$PROTO ${TCPREMOTEIP:-none}"', f"unix:{path}").started()
    assert unix_exchange(path, b"") == b"UNIX none\n"


def test_datagram_with_nc_and_python(listen, sockdir):
    path = f"{sockdir}/d"
    lst = listen("-u", f"unix:{path}", stdin=None).started()
    assert lst.kind == "unix-dgram"
    client = f"{sockdir}/c"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.bind(client)
        s.sendto(b"dgram one", path)
        lst.wait_out(9)
        lst.p.stdin.write(b"answer")
        lst.p.stdin.flush()
        data, frm = s.recvfrom(100)
        assert data == b"answer"
    nc = subprocess.Popen(["nc", "-U", "-u", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    try:
        nc.stdin.write(b"from nc -Uu\n")
        nc.stdin.flush()
        lst.wait_out(9 + 12)
        lst.p.stdin.write(b"to nc\n")
        lst.p.stdin.flush()
        assert nc.stdout.readline() == b"to nc\n"
    finally:
        nc.kill()
        nc.wait(5)
    assert lst.stdout == b"dgram onefrom nc -Uu\n"
    lst.signal(signal.SIGTERM)
    assert lst.wait(5) == 0
    assert not os.path.exists(path)


def test_stale_file_replaced_live_one_refused(listen, sockdir):
    path = f"{sockdir}/stale"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)             # a server that died: the file stays, nobody listens
    dead.close()
    assert os.path.exists(path)
    lst = listen("-k", f"unix:{path}").started()
    # a second one finds a live server there: refused, the file kept
    r = run_to_end([SOCKFLOW, "listen", f"unix:{path}"])
    assert r.returncode == 1
    assert r.stderr.decode() == (f"sockflow: bind unix:{path}: Address already in use "
                                 "(another server is running there)\n")
    assert unix_exchange(path, b"first still served\n") == b""
    lst.wait_out(19)
    # not a socket: never removed
    other = f"{sockdir}/plain"
    open(other, "w").close()
    r = run_to_end([SOCKFLOW, "listen", f"unix:{other}"])
    assert r.returncode == 1 and os.path.exists(other)
    lst.signal(signal.SIGTERM)
    assert lst.wait(5) == 0
    assert not os.path.exists(path)


def test_trace_has_af_unix_and_no_tcp_state(listen, sockdir):
    path = f"{sockdir}/t"
    lst = listen("--trace", f"unix:{path}", stdin=b"").started()
    unix_exchange(path, b"q")
    assert lst.wait(10) == 0
    lines = [l for l in lst.err_lines if " server " in l]
    assert any("socket" in l and "AF_UNIX, SOCK_STREAM" in l for l in lines), lst.stderr
    assert any(" bind " in l and f"unix:{path}" in l for l in lines), lst.stderr
    assert any(" accept4 " in l and "peer=unix:" in l for l in lines), lst.stderr
    for state in ("LISTEN", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT", "TIME_WAIT", "SYN_"):
        assert not any(state in l for l in lines), (state, lst.stderr)


def test_path_too_long_is_a_usage_error():
    r = run_to_end([SOCKFLOW, "listen", "unix:/" + "a" * 120])
    assert r.returncode == 2
    assert "longer than 107 bytes" in r.stderr.decode()


def test_serve_on_unix_sockets(procs, sockdir):
    path = f"{sockdir}/echo"
    s = procs([SOCKFLOW, "serve", "-l", f"unix:{path}", "-l",
               f"unix:@sockflow-serve-{os.getpid()}", "echo"])
    s.wait_line("sockflow-serve")
    lines = s.stdout
    assert f"listening on unix-stream unix:{path} (echo)" in lines
    assert f"listening on unix-stream unix:@sockflow-serve-{os.getpid()} (echo)" in lines
    assert "udp" not in lines                   # stream services only on Unix sockets
    data = bytes(range(256)) * 100
    assert unix_exchange_half_close(path, data) == data
    assert unix_exchange_half_close(f"\0sockflow-serve-{os.getpid()}", b"abstract\n") == \
        b"abstract\n"
    r = run_to_end([SOCKFLOW, "connect", f"unix:{path}"], input=b"via connect\n")
    assert r.stdout == b"via connect\n"
    assert s.stop() == 0
    assert_no_sanitizer_report(s.stderr)
    assert not os.path.exists(path)


def unix_exchange_half_close(path, data, timeout=10):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk


@pytest.mark.parametrize("mode,svc", [("echo", "echo"), ("connect", "echo"), ("stream", "discard")])
def test_bench_over_unix(procs, sockdir, mode, svc):
    path = f"{sockdir}/{svc}"
    s = procs([SOCKFLOW, "serve", "-l", f"unix:{path}", svc])
    s.wait_line("listening on unix-stream")
    r = run_to_end([SOCKFLOW, "bench", mode, f"unix:{path}", "0", "-c", "2", "-d", "1"],
                   timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert re.search(r"errors\s+none", out), out
    if mode != "stream":
        assert re.search(r"mismatches\s+0\b", out), out


def test_serve_datagrams_on_unix_sockets(procs, sockdir):
    """serve -u on a socket file and an abstract name: each datagram is answered to the
    name its sender bound (a path, an abstract name, connect's autobind); a sender with
    no name cannot be answered, so it is counted and logged, and the service goes on."""
    path, name = f"{sockdir}/echo-dgram", f"sockflow-dgram-{os.getpid()}"
    s = procs([SOCKFLOW, "serve", "-u", "-l", f"unix:{path}", "-l", f"unix:@{name}", "echo"])
    s.wait_line(f"unix-dgram unix:@{name}")
    assert f"listening on unix-dgram unix:{path} (echo)" in s.stdout
    assert "unix-stream" not in s.stdout
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed:
        unnamed.sendto(b"nobody to answer\n", path)
    for server in (path, "\0" + name):
        for client in (f"{sockdir}/client", f"\0sockflow-client-{os.getpid()}"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
                c.bind(client)
                c.settimeout(10)
                c.sendto(b"\x00binary\xff" * 100, server)
                data, src = c.recvfrom(65536)
                assert data == b"\x00binary\xff" * 100
                assert src in (server, server.encode())
            if not client.startswith("\0"):
                os.unlink(client)
    r = subprocess.run(["socat", "-t", "2", "-", f"UNIX-SENDTO:{path},bind={sockdir}/socat"],
                       input=b"via socat\n", capture_output=True, timeout=20)
    assert r.stdout == b"via socat\n", r.stderr
    r = run_to_end([SOCKFLOW, "connect", "-u", f"unix:{path}"], input=b"via connect\n")
    assert r.stdout == b"via connect\n", r.stderr
    s.wait_line(r"no reply to 1 datagram.*unnamed Unix socket\) \(last unix:\)", stream="err")
    assert s.stop() == 0
    assert_no_sanitizer_report(s.stderr)
    assert not os.path.exists(path)
