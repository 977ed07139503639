"""inetd for real: Debian's openbsd-inetd, run in the foreground (-d) on a private
configuration file, starts `sockflow serve --inetd echo` and `sockflow listen --inetd -e rev`
as `nowait` services on loopback; a client must get exactly the service's bytes (nothing of
ours on the socket, which is also the services' standard error)."""
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import ROOT, SOCKFLOW, free_port, tcp_exchange, wait_listening

INETD = "/usr/sbin/inetd"
REV = shutil.which("rev") or "/usr/bin/rev"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="inetd needs root to start its services "
                                                 "as a user (the config's user field)"),
    pytest.mark.skipif(not os.access(INETD, os.X_OK),
                       reason="inetd not installed (Debian package openbsd-inetd; "
                              "tests/deps.sh installs it)"),
]


def distinct_free_ports(n):
    ports = []
    for _ in range(100):
        p = free_port()
        if p not in ports:
            ports.append(p)
        if len(ports) == n:
            return ports
    raise AssertionError("no free ports")


class Inetd:
    """openbsd-inetd on a config file of its own: -d keeps it in the foreground (and
    writes no pid file), so it is stopped by its pid."""

    def __init__(self, tmp_path, lines):
        self.conf = tmp_path / "inetd.conf"
        self.conf.write_text("".join(l + "\n" for l in lines))
        self.p = subprocess.Popen([INETD, "-d", str(self.conf)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            out, err = self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate(timeout=5)
        return self.p.returncode, (out + err).decode(errors="replace")


@pytest.fixture
def inetd(tmp_path):
    started = []

    def start(lines, ports):
        d = Inetd(tmp_path, lines)
        started.append(d)
        for port in ports:
            try:
                wait_listening(port, timeout=5)
            except AssertionError:
                rc, log = d.stop()
                raise AssertionError(f"inetd did not listen on {port} (exit {rc}): {log}")
        return d

    yield start
    for d in started:
        d.stop()


def line(port, cmd, user="root"):
    return f"127.0.0.1:{port} stream tcp nowait {user} {SOCKFLOW} sockflow {cmd}"


def test_inetd_nowait_serve_echo_and_listen_exec(inetd):
    echo_port, rev_port = distinct_free_ports(2)
    d = inetd([line(echo_port, "serve --inetd echo"),
               line(rev_port, f"listen --inetd -e {REV}")], [echo_port, rev_port])
    assert tcp_exchange(echo_port, b"through inetd\n") == b"through inetd\n"
    assert tcp_exchange(rev_port, b"stressed\nlevel up\n") == b"desserts\npu level\n"
    # nowait: one process per client, so a second client is served the same way.
    assert tcp_exchange(echo_port, b"again\n") == b"again\n"
    assert tcp_exchange(rev_port, b"again\n") == b"niaga\n"
    rc, log = d.stop()
    assert rc == 0, log


def test_inetd_binary_and_concurrent_clients(inetd):
    (echo_port,) = distinct_free_ports(1)
    inetd([line(echo_port, "serve --inetd echo")], [echo_port])
    blob = os.urandom(1 << 20)
    assert tcp_exchange(echo_port, blob, timeout=20) == blob
    results = {}

    def client(i):
        data = f"client {i}\n".encode() * 100
        results[i] = tcp_exchange(echo_port, data) == data

    threads = [threading.Thread(target=client, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert results == {i: True for i in range(5)}


def test_inetd_listen_deny_closes_without_a_byte(inetd):
    """--allow/--deny apply under inetd: a denied peer gets the connection closed and no
    message on the socket (the refusal is for our log, which is not the socket)."""
    (port,) = distinct_free_ports(1)
    inetd([line(port, f"listen --inetd --deny 127.0.0.1 -e {REV}")], [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        try:
            s.sendall(b"should not be reversed\n")
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        got = b""
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    assert got == b""


def test_readme_inetd_conf_lines_as_written(tmp_path):
    """The README's /etc/inetd.conf lines, as written (bare ports, user nobody), with only
    the binary's path changed: they bind every address, so inetd and its clients run in
    a network namespace of their own."""
    if shutil.which("unshare") is None or shutil.which("nc") is None:
        pytest.skip("unshare (util-linux) or nc (netcat-openbsd) not installed")
    readme = open(os.path.join(ROOT, "README.md")).read()
    lines = re.findall(r"^(\d+) stream tcp nowait nobody /usr/local/bin/sockflow (sockflow .*)$",
                       readme, re.M)
    assert len(lines) == 2, lines
    conf = tmp_path / "inetd.conf"
    conf.write_text("".join(f"{port} stream tcp nowait nobody {SOCKFLOW} {cmd}\n"
                            for port, cmd in lines))
    script = (f"ip link set lo up; {INETD} -d {conf} 2>/dev/null & i=$!; "
              f"n=0; while [ $n -lt 100 ] && ! ss -ltn | grep -q ':{lines[1][0]} '; do "
              f"sleep 0.05; n=$((n+1)); done; "
              f"echo 'inetd nowait' | nc -N -w 5 127.0.0.1 {lines[0][0]}; "
              f"echo 'inetd echo' | nc -N -w 5 127.0.0.1 {lines[1][0]}; "
              f"kill $i; wait $i")
    r = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True,
                       timeout=30)
    assert r.stdout == b"tiawon dteni\ninetd echo\n", r.stderr
