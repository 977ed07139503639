"""Errors: one line on stderr naming the call, the address and the reason; exit status 1
for a runtime failure, 2 for a usage error (with a hint line); nothing on stdout."""
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import time

import pytest

from conftest import SOCKFLOW, free_port, have_ipv6_loopback, run_sockflow

FAIL, USAGE = 1, 2


def failed(r, message):
    """r ended with exit status 1 and exactly one error line, message."""
    assert r.stdout == b""
    assert r.stderr.decode() == f"sockflow: {message}\n"
    assert r.returncode == FAIL


# ---- runtime failures: exit 1 ----

def usage_failed(r, cmd, message):
    """r ended with exit status 2: the message naming the argument, then the hint."""
    assert r.stdout == b""
    assert r.stderr.decode() == (f"sockflow {cmd}: {message}\n"
                                 f"Try 'sockflow {cmd} --help'.\n")
    assert r.returncode == USAGE


# A bad port is a bad argument: a usage error (exit 2), not a runtime failure.
@pytest.mark.parametrize("port", ["99999", "65536", "1x"])
def test_connect_bad_port(port):
    r = run_sockflow(["connect", "127.0.0.1", port])
    usage_failed(r, "connect", f"port {port}: not a number from 0 to 65535")


def test_connect_udp_bad_port():
    usage_failed(run_sockflow(["connect", "-u", "127.0.0.1", "99999"]), "connect",
                 "port 99999: not a number from 0 to 65535")


def test_serve_bad_port():
    failed(run_sockflow(["serve", "echo:99999"]), "port 99999: not a number from 0 to 65535")


@pytest.mark.parametrize("udp", [False, True])
def test_unknown_host(udp):
    r = run_sockflow(["connect", *(["-u"] if udp else []), "nosuch.invalid", "80"], timeout=60)
    assert r.returncode == FAIL and r.stdout == b""
    assert re.fullmatch(rb"sockflow: resolve nosuch\.invalid:80: [^\n]+\n", r.stderr), r.stderr


def test_serve_unknown_listen_host():
    r = run_sockflow(["serve", "-l", "nosuch.invalid", "echo:0"], timeout=60)
    assert r.returncode == FAIL and r.stdout == b""
    assert re.fullmatch(rb"sockflow: (listen: )?resolve nosuch\.invalid:0: [^\n]+\n", r.stderr), \
        r.stderr


def test_address_in_use_by_another_sockflow(serve):
    s = serve("echo:0")
    port = s.port("tcp")
    r = run_sockflow(["serve", f"echo:{port}"])
    failed(r, f"bind 127.0.0.1:{port}: Address already in use (another server is running there)")
    r = run_sockflow(["serve", "-u", f"echo:{port}"])
    failed(r, f"bind 127.0.0.1:{port}: Address already in use (another server is running there)")
    # The first server is unharmed.
    assert s.alive()


@pytest.mark.parametrize("first,second,why", [
    ("0.0.0.0", "127.0.0.1", "overlaps 0.0.0.0 (every IPv4 address is in the wildcard): "
                             "give one of them"),
    ("127.0.0.1", "0.0.0.0", "overlaps 127.0.0.1 (every IPv4 address is in the wildcard): "
                             "give one of them"),
    ("127.0.0.1", "127.0.0.1", "given twice"),
])
@pytest.mark.parametrize("port", ["0", "free"])
def test_serve_overlapping_listen_addresses(first, second, why, port):
    """Two -l that take the same port twice: one line naming the overlap, exit 1; never a
    silent server bound to nothing, never 'another server' blamed for our own -l."""
    port = str(free_port()) if port == "free" else port
    r = run_sockflow(["serve", "-l", first, "-l", second, f"echo:{port}"], timeout=10)
    failed(r, f"listen {second}: {why}")


def test_serve_two_services_on_one_port():
    port = free_port()
    r = run_sockflow(["serve", "-t", f"echo:{port}", f"discard:{port}"], timeout=10)
    failed(r, f"bind 127.0.0.1:{port}: this server listens on 127.0.0.1:{port} already (echo)")


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback (::1)")
def test_address_in_use_on_ipv6_only():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        held.bind(("::1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip("127.0.0.1 has that port too")
        r = run_sockflow(["serve", "-t", f"echo:{port}"])
    failed(r, f"bind [::1]:{port}: Address already in use (another server is running there)")


def test_privileged_port_without_privilege():
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to user nobody")
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) not installed")
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            if int(f.read()) <= 7:
                pytest.skip("port 7 is not privileged on this host")
    except OSError:
        pass
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        SOCKFLOW, "serve", "echo:7"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    if b"setpriv:" in r.stderr:
        pytest.skip(f"setpriv cannot drop privilege here: {r.stderr!r}")
    failed(r, "bind 127.0.0.1:7: Permission denied (ports below 1024 need privilege: "
              "try echo:7007 or another port above 1023)")


def test_connection_refused():
    port = free_port()
    failed(run_sockflow(["connect", "127.0.0.1", str(port)]),
           f"connect 127.0.0.1:{port}: Connection refused")


def test_udp_datagram_refused():
    # Nobody on that UDP port: the ICMP port unreachable comes back as ECONNREFUSED on
    # the connected socket, reported by the next receive.
    port = free_port("udp")
    t0 = time.monotonic()
    r = run_sockflow(["connect", "-u", "-w", "5", "127.0.0.1", str(port)], input=b"hello?\n")
    failed(r, f"recv 127.0.0.1:{port}: Connection refused")
    assert time.monotonic() - t0 < 4


def test_connection_reset_by_the_server():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as l:
        l.bind(("127.0.0.1", 0))
        l.listen(1)
        l.settimeout(10)
        port = l.getsockname()[1]
        p = subprocess.Popen([SOCKFLOW, "connect", "127.0.0.1", str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            conn, _ = l.accept()
            with conn:
                p.stdin.write(b"hello")
                p.stdin.flush()
                conn.settimeout(10)
                assert conn.recv(10) == b"hello"
                # SO_LINGER 0: close() sends a RST instead of a FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=5)
    assert p.returncode == FAIL and out == b""
    assert err.decode() == f"sockflow: recv 127.0.0.1:{port}: Connection reset by peer\n"


def fill_accept_queue(listener, port, most=16):
    """Connect until one connection hangs: with listen(0) the queue takes one and Linux
    drops further SYNs. Returns the sockets, to be closed by the caller."""
    socks = []
    for _ in range(most):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        socks.append(c)
        if c.connect_ex(("127.0.0.1", port)) == 0:
            continue
        _, ready, _ = select.select([], [c], [], 0.3)
        if not ready:
            return socks
    for c in socks:
        c.close()
    pytest.skip("the accept queue never filled: SYNs are not dropped here")


def test_connection_timed_out():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as l:
        l.bind(("127.0.0.1", 0))
        l.listen(0)
        port = l.getsockname()[1]
        socks = fill_accept_queue(l, port)
        try:
            t0 = time.monotonic()
            r = run_sockflow(["connect", "-w", "1", "127.0.0.1", str(port)],
                             stdin=subprocess.DEVNULL)
            took = time.monotonic() - t0
        finally:
            for c in socks:
                c.close()
    failed(r, f"connect 127.0.0.1:{port}: Connection timed out")
    assert 0.9 <= took < 2.5, took


def test_source_address_not_local():
    addr = "203.0.113.77"      # TEST-NET-3: not configured here, so bind() must fail
    port = free_port()
    failed(run_sockflow(["connect", "-s", addr, "127.0.0.1", str(port)]),
           f"bind {addr}:0: Cannot assign requested address")


# ---- usage errors: exit 2 and a hint ----

@pytest.mark.parametrize("args, names", [
    (["serve"], "service"),
    (["connect"], "HOST PORT"),
    (["connect", "127.0.0.1"], "HOST PORT"),
    (["serve", "-x", "echo:0"], "-x"),
    (["serve", "--bogus", "echo:0"], "--bogus"),
    (["connect", "-x", "127.0.0.1", "7"], "-x"),
    (["serve", "-j"], "-j"),
    (["connect", "-w"], "-w"),
    (["serve", "nosuch:0"], "nosuch"),
    (["serve", "-j", "0", "echo:0"], "-j 0"),
    (["serve", "-j", "65", "echo:0"], "-j 65"),
    (["serve", "-j", "two", "echo:0"], "-j two"),
    (["connect", "-w", "soon", "127.0.0.1", "7"], "-w soon"),
    (["connect", "-q", "-1", "127.0.0.1", "7"], "-q -1"),
    (["serve", "-l", "127.0.0.1:5", "echo:0"], "127.0.0.1:5"),
])
def test_usage_error(args, names):
    r = run_sockflow(args)
    cmd = args[0]
    lines = r.stderr.decode().splitlines()
    assert r.returncode == USAGE, r.stderr
    assert r.stdout == b""
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"sockflow {cmd}: ") and names in lines[0], lines[0]
    assert lines[1] == f"Try 'sockflow {cmd} --help'."


def test_no_command():
    r = run_sockflow([])
    assert r.returncode == USAGE and r.stdout == b""
    assert r.stderr.startswith(b"usage: sockflow ")


def test_unknown_command():
    r = run_sockflow(["frobnicate"])
    assert r.returncode == USAGE and r.stdout == b""
    assert r.stderr.decode().splitlines()[0] == "sockflow: unknown command 'frobnicate'"


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"], ["serve", "--help"],
                                  ["serve", "-h"], ["connect", "--help"], ["connect", "-h"]])
def test_help_exits_zero(args):
    r = run_sockflow(args)
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout.startswith(b"usage: sockflow")
    if len(args) == 2:
        assert r.stdout.startswith(f"usage: sockflow {args[0]} ".encode())


def test_version():
    r = run_sockflow(["--version"])
    assert (r.returncode, r.stderr) == (0, b"")
    assert re.fullmatch(rb"sockflow \d+\.\d+\.\d+\n", r.stdout)


# Every subcommand says what getopt found wrong in one line naming the option as
# typed (not getopt's own line besides, not a bare "unknown option"), then the hint.
BAD_OPTIONS = {
    "serve": (["echo:0"], "--loops", "-j", "--quiet"),
    "connect": (["127.0.0.1", "7"], "--wait", "-w", "--udp"),
    "bench": (["echo", "127.0.0.1", "7"], "--conns", "-c", "--json"),
    "demo": ([], "--section", "-n", "--json"),
}


@pytest.mark.parametrize("cmd", sorted(BAD_OPTIONS))
@pytest.mark.parametrize("kind", ["unknown-long", "unknown-short", "missing-long",
                                  "missing-short", "value-on-flag"])
def test_bad_option_named_once(cmd, kind):
    rest, long_opt, short_opt, flag = BAD_OPTIONS[cmd]
    args, message = {
        "unknown-long": ([*rest, "--nosuch"], "unknown option --nosuch"),
        "unknown-short": (["-x", *rest], "unknown option -x"),
        "missing-long": ([*rest, long_opt], f"option {long_opt} needs a value"),
        "missing-short": ([*rest, short_opt], f"option {short_opt} needs a value"),
        "value-on-flag": ([f"{flag}=1", *rest], f"option {flag} takes no value"),
    }[kind]
    usage_failed(run_sockflow([cmd, *args]), cmd, message)


def test_bad_option_of_connect_without_the_word_connect():
    usage_failed(run_sockflow(["--nosuch", "127.0.0.1", "7"]), "connect",
                 "unknown option --nosuch")


@pytest.mark.parametrize("opt", ["--idle-timeout", "--send-timeout", "--drain-timeout"])
def test_serve_timeout_error_names_the_option(opt):
    usage_failed(run_sockflow(["serve", opt, "soon", "echo:0"]), "serve",
                 f"{opt} soon: a number of seconds")


def test_connect_last_of_4_and_6_counts():
    # As in serve and bench: "-4 -6" means IPv6 only, so an IPv4 address cannot be
    # resolved; "-6 -4" means IPv4 only and connects.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as l:
        l.bind(("127.0.0.1", 0))
        l.listen(1)
        port = l.getsockname()[1]
        r = run_sockflow(["connect", "-4", "-6", "-n", "-q", "0", "127.0.0.1", str(port)])
        assert r.returncode == FAIL and r.stdout == b""
        assert r.stderr.decode().startswith(f"sockflow: resolve 127.0.0.1:{port}: "), r.stderr
        r = run_sockflow(["connect", "-6", "-4", "-n", "-q", "0", "127.0.0.1", str(port)])
        assert (r.returncode, r.stderr) == (0, b"")


# getopt takes each byte of "é" for an option of its own and stops inside the
# argument: the error named the argument before it ("unknown option serve").
@pytest.mark.parametrize("cmd, rest", [("serve", ["echo:0"]), ("connect", ["127.0.0.1", "7"]),
                                       ("bench", ["echo", "127.0.0.1", "7"]), ("demo", [])])
@pytest.mark.parametrize("cluster", ["-é", "-vé"])
def test_unknown_multibyte_short_option_named(cmd, rest, cluster):
    if cmd == "bench" and cluster == "-vé":
        cluster = "-4é"     # bench has no -v
    if cmd == "serve" and cluster == "-vé":
        cluster = "-té"
    usage_failed(run_sockflow([cmd, cluster, *rest]), cmd, f"unknown option {cluster}")
