"""`sockflow serve echo` against real clients: nc, socat and Python sockets, exact bytes."""
import os
import random
import re
import selectors
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import (free_port, have_ipv6_loopback, proc_net_sockets, tcp_exchange,
                      udp_exchange)

LOOP4 = "0100007F"                                 # 127.0.0.1 as /proc/net/tcp shows it
LOOP6 = "00000000000000000000000001000000"         # ::1 as /proc/net/tcp6 shows it
LINE_RE = re.compile(r"^listening on (tcp|udp) (127\.0\.0\.1|\[::1\]|0\.0\.0\.0|\[::\]):(\d+) \(echo\)$")

ALL_BYTES = bytes(range(256))


needs_ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback (::1)")


def socket_inodes(pid):
    """Inodes of the sockets process pid holds."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m:
            out.add(int(m.group(1)))
    return out


def bound_sockets(pid, port):
    """Sorted (table, hex local address, state) of the sockets pid holds on port."""
    mine = socket_inodes(pid)
    found = []
    for proto in ("tcp", "udp"):
        for table, host, state, ino in proc_net_sockets(proto, port):
            if ino in mine:
                found.append((table, host, state))
    return sorted(found)


def non_loopback_addrs():
    """This host's addresses other than loopback and link-local, from `ip -o addr`."""
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    addrs = []
    for m in re.finditer(r"\binet6? ([0-9a-fA-F.:]+)/\d+", out):
        a = m.group(1)
        if a.startswith("127.") or a == "::1" or a.lower().startswith("fe80"):
            continue
        addrs.append(a)
    return addrs


def tcp_refused(host, port, timeout=3.0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return True
        return False


def run_peer(argv, data, timeout=20):
    r = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    assert r.returncode == 0, (argv, r.returncode, r.stderr)
    return r.stdout


# ---- the listening lines and the addresses ----

@needs_ipv6
def test_listening_lines_one_port_for_tcp_udp_and_both_families(serve):
    s = serve("echo:0")
    lines = s.stdout.splitlines()
    assert len(lines) == 4, lines
    seen = set()
    ports = set()
    for line in lines:
        m = LINE_RE.match(line)
        assert m, line
        seen.add((m.group(1), m.group(2)))
        ports.add(int(m.group(3)))
    assert seen == {("tcp", "127.0.0.1"), ("udp", "127.0.0.1"),
                    ("tcp", "[::1]"), ("udp", "[::1]")}
    assert len(ports) == 1 and 0 < ports.pop() < 65536
    port = s.port("tcp")
    # The one port answers on all four.
    assert tcp_exchange(port, b"v4 tcp") == b"v4 tcp"
    assert tcp_exchange(port, b"v6 tcp", host="::1") == b"v6 tcp"
    assert udp_exchange(port, b"v4 udp") == b"v4 udp"
    assert udp_exchange(port, b"v6 udp", host="::1") == b"v6 udp"
    assert s.stderr == ""


@needs_ipv6
def test_default_listens_on_loopback_only(serve):
    s = serve("echo:0")
    port = s.port("tcp")
    assert bound_sockets(s.pid, port) == sorted([
        ("tcp", LOOP4, "0A"), ("tcp6", LOOP6, "0A"),
        ("udp", LOOP4, "07"), ("udp6", LOOP6, "07")])
    for addr in non_loopback_addrs():
        assert tcp_refused(addr, port), f"tcp {addr}:{port} answered"
        assert udp_exchange(port, b"not here", host=addr, timeout=0.5) is None


def test_listen_all_with_l_0_0_0_0(serve):
    s = serve("-l", "0.0.0.0", "echo:0")
    port = s.port("tcp")
    assert s.stdout.splitlines() == [f"listening on tcp 0.0.0.0:{port} (echo)",
                                     f"listening on udp 0.0.0.0:{port} (echo)"]
    assert bound_sockets(s.pid, port) == [("tcp", "00000000", "0A"), ("udp", "00000000", "07")]
    assert tcp_exchange(port, b"loopback") == b"loopback"
    for addr in [a for a in non_loopback_addrs() if ":" not in a]:
        assert tcp_exchange(port, b"via " + addr.encode(), host=addr) == b"via " + addr.encode()
        assert udp_exchange(port, b"udp " + addr.encode(), host=addr) == b"udp " + addr.encode()


def test_tcp_only(serve):
    s = serve("-t", "echo:0")
    port = s.port("tcp")
    assert all(p == "tcp" for p, _, _, _ in s.listeners)
    assert tcp_exchange(port, b"tcp only") == b"tcp only"
    assert not [b for b in bound_sockets(s.pid, port) if b[0].startswith("udp")]
    assert udp_exchange(port, b"no udp", timeout=0.5) is None


def test_udp_only(serve):
    s = serve("-u", "echo:0")
    port = s.port("udp")
    assert all(p == "udp" for p, _, _, _ in s.listeners)
    assert udp_exchange(port, b"udp only") == b"udp only"
    assert not [b for b in bound_sockets(s.pid, port) if b[0].startswith("tcp")]
    assert tcp_refused("127.0.0.1", port)


def test_dash_4_and_dash_6(serve):
    s4 = serve("-4", "echo:0")
    assert [(p, h) for p, h, _, _ in s4.listeners] == [("tcp", "127.0.0.1"), ("udp", "127.0.0.1")]
    assert tcp_exchange(s4.port("tcp"), b"four") == b"four"
    if have_ipv6_loopback():
        s6 = serve("-6", "echo:0")
        assert [(p, h) for p, h, _, _ in s6.listeners] == [("tcp", "::1"), ("udp", "::1")]
        assert tcp_exchange(s6.port("tcp"), b"six", host="::1") == b"six"
        assert tcp_refused("127.0.0.1", s6.port("tcp"))


def test_listen_on_two_addresses(serve):
    s = serve("-l", "127.0.0.1", "-l", "127.0.0.2", "echo:0")
    port = s.port("tcp")
    assert sorted((p, h, pt) for p, h, pt, _ in s.listeners) == sorted(
        [("tcp", "127.0.0.1", port), ("udp", "127.0.0.1", port),
         ("tcp", "127.0.0.2", port), ("udp", "127.0.0.2", port)])
    for host in ("127.0.0.1", "127.0.0.2"):
        assert tcp_exchange(port, host.encode(), host=host) == host.encode()
        assert udp_exchange(port, host.encode(), host=host) == host.encode()
    assert tcp_refused("127.0.0.3", port)


def test_given_port(serve):
    # A port named on the command line (found free just before) is the one used.
    for _ in range(5):
        port = free_port()
        try:
            s = serve(f"echo:{port}")
            break
        except AssertionError:
            continue            # taken on another address or protocol meanwhile
    else:
        pytest.fail("no free port found")
    assert {pt for _, _, pt, _ in s.listeners} == {port}
    assert tcp_exchange(port, b"named port") == b"named port"
    assert udp_exchange(port, b"named port") == b"named port"


# ---- real clients ----

def test_nc_half_close(serve):
    s = serve("echo:0")
    data = b"hello\nworld\n" + ALL_BYTES
    assert run_peer(["nc", "-N", "127.0.0.1", str(s.port("tcp"))], data) == data


def test_nc_udp(serve):
    s = serve("-u", "echo:0")
    assert run_peer(["nc", "-u", "-w", "1", "127.0.0.1", str(s.port("udp"))], b"nc datagram") \
        == b"nc datagram"


def test_socat_tcp(serve):
    s = serve("echo:0")
    data = b"socat says hi\n" + ALL_BYTES * 4
    assert run_peer(["socat", "-", f"TCP:127.0.0.1:{s.port('tcp')}"], data) == data


def test_socat_udp(serve):
    s = serve("echo:0")
    assert run_peer(["socat", "-t", "2", "-", f"UDP:127.0.0.1:{s.port('udp')}"],
                    ALL_BYTES) == ALL_BYTES


@needs_ipv6
def test_socat_tcp6(serve):
    s = serve("echo:0")
    data = b"over ::1 " + ALL_BYTES
    assert run_peer(["socat", "-", f"TCP6:[::1]:{s.port('tcp', host='::1')}"], data) == data


def test_all_byte_values_tcp_and_udp(serve):
    s = serve("echo:0")
    data = ALL_BYTES + bytes(reversed(ALL_BYTES)) + b"\0\0\r\n\xff"
    assert tcp_exchange(s.port("tcp"), data) == data
    assert udp_exchange(s.port("udp"), ALL_BYTES) == ALL_BYTES
    assert udp_exchange(s.port("udp"), b"\0") == b"\0"


def test_largest_udp_datagram(serve):
    s = serve("-u", "echo:0")
    data = random.Random(7).randbytes(65507)    # the largest IPv4 UDP payload
    assert udp_exchange(s.port("udp"), data) == data


def test_one_mib_python_half_close(serve):
    s = serve("echo:0")
    data = random.Random(1).randbytes(1 << 20)
    assert tcp_exchange(s.port("tcp"), data, timeout=20) == data


def test_one_mib_nc_and_socat(serve):
    s = serve("echo:0")
    port = str(s.port("tcp"))
    data = random.Random(2).randbytes(1 << 20)
    assert run_peer(["nc", "-N", "127.0.0.1", port], data, timeout=30) == data
    assert run_peer(["socat", "-", f"TCP:127.0.0.1:{port}"], data, timeout=30) == data


def test_reply_before_half_close(serve):
    # Echo is immediate, not held until the client's FIN.
    s = serve("echo:0")
    with socket.create_connection(("127.0.0.1", s.port("tcp")), timeout=5) as c:
        for i in range(5):
            msg = f"line {i}\n".encode()
            c.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = c.recv(100)
                assert chunk, "server closed early"
                got += chunk
            assert got == msg
        c.shutdown(socket.SHUT_WR)
        assert c.recv(100) == b""


def test_200_concurrent_clients(serve):
    n = 200
    s = serve("-t", "echo:0")
    port = s.port("tcp")
    rnd = random.Random(3)
    payloads = [f"client {i}:".encode() + rnd.randbytes(4000) for i in range(n)]
    socks = []
    try:
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(c)
        # All 200 are held by the server at the same time before anyone sends.
        deadline = time.monotonic() + 10
        while True:
            mine = socket_inodes(s.pid)
            held = [1 for _, _, st, ino in proc_net_sockets("tcp", port, "01") if ino in mine]
            if len(held) == n:
                break
            assert time.monotonic() < deadline, f"server holds {len(held)} of {n} clients"
            time.sleep(0.05)
        sel = selectors.DefaultSelector()
        got = {}
        for i, c in enumerate(socks):
            c.sendall(payloads[i])
            c.shutdown(socket.SHUT_WR)
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ, i)
            got[i] = bytearray()
        open_ = n
        deadline = time.monotonic() + 30
        while open_:
            assert time.monotonic() < deadline, f"{open_} clients still waiting"
            for key, _ in sel.select(timeout=1):
                chunk = key.fileobj.recv(65536)
                if chunk:
                    got[key.data] += chunk
                else:
                    sel.unregister(key.fileobj)
                    open_ -= 1
        sel.close()
        for i in range(n):
            assert bytes(got[i]) == payloads[i], f"client {i} got another's bytes"
    finally:
        for c in socks:
            c.close()


@needs_ipv6
def test_ipv6_tcp_and_udp(serve):
    s = serve("echo:0")
    data = b"six " + ALL_BYTES
    assert tcp_exchange(s.port("tcp", host="::1"), data, host="::1") == data
    assert udp_exchange(s.port("udp", host="::1"), data, host="::1") == data


def test_two_udp_clients_interleaved(serve):
    # nc and ncat lock onto the first peer; a UDP server answers every sender.
    s = serve("-u", "echo:0")
    dest = ("127.0.0.1", s.port("udp"))
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for c in (a, b):
            c.bind(("127.0.0.1", 0))
            c.settimeout(3)
        for i in range(5):
            a.sendto(f"A{i}".encode(), dest)
            b.sendto(f"B{i}".encode(), dest)
        for i in range(5):
            data, frm = a.recvfrom(100)
            assert (data, frm) == (f"A{i}".encode(), dest)
            data, frm = b.recvfrom(100)
            assert (data, frm) == (f"B{i}".encode(), dest)
    finally:
        a.close()
        b.close()


def test_two_socat_udp_clients_at_once(serve):
    s = serve("-u", "echo:0")
    port = s.port("udp")
    argv = ["socat", "-t", "2", "-", f"UDP:127.0.0.1:{port}"]
    p1 = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p2 = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        out1, _ = p1.communicate(b"first client", timeout=10)
        out2, _ = p2.communicate(b"second client", timeout=10)
    finally:
        for p in (p1, p2):
            if p.poll() is None:
                p.kill()
                p.wait(5)
    assert out1 == b"first client"
    assert out2 == b"second client"


# ---- threads ----

def epoll_targets(pid):
    """{epoll fd: set of fds it watches}, from /proc/PID/fdinfo."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                out[int(fd)] = {int(m.group(1)) for m in re.finditer(r"tfd:\s*(\d+)", f.read())}
        except OSError:
            continue
    return out


def connection_fds(pid, port):
    """fds of pid that are established TCP connections on local port."""
    est = {ino for _, _, _, ino in proc_net_sockets("tcp", port, "01")}
    fds = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if m and int(m.group(1)) in est:
            fds.add(int(fd))
    return fds


def test_two_loops_share_the_port_and_spread_clients(serve):
    n = 40
    # 20 datagrams back to back from one address outrun the default burst: no budget.
    # On epoll, whose sets show which loop holds which client (io_uring's do not).
    s = serve("-j", "2", "--udp-rate", "0", "--no-io-uring", "echo:0")
    port = s.port("tcp")
    bound = bound_sockets(s.pid, port)
    assert bound.count(("tcp", LOOP4, "0A")) == 2, bound
    assert bound.count(("udp", LOOP4, "07")) == 2, bound
    assert len(os.listdir(f"/proc/{s.pid}/task")) >= 2
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    try:
        deadline = time.monotonic() + 10
        while True:
            conns = connection_fds(s.pid, port)
            watched = {ep: fds & conns for ep, fds in epoll_targets(s.pid).items()}
            if sum(len(v) for v in watched.values()) == n:
                break
            assert time.monotonic() < deadline, f"{len(conns)} connections, watched {watched}"
            time.sleep(0.05)
        busy = [ep for ep, fds in watched.items() if fds]
        assert len(busy) == 2, f"clients not spread over both loops: {watched}"
        for i, c in enumerate(socks):
            msg = f"client {i}".encode()
            c.sendall(msg)
            c.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = c.recv(100)
                if not chunk:
                    break
                got += chunk
            assert got == msg
    finally:
        for c in socks:
            c.close()
    for i in range(20):
        msg = f"udp {i}".encode()
        assert udp_exchange(s.port("udp"), msg) == msg


# ---- stopping ----

@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM])
def test_signal_exits_zero_promptly(serve, signo):
    s = serve("echo:0")
    assert tcp_exchange(s.port("tcp"), b"before") == b"before"
    t0 = time.monotonic()
    s.signal(signo)
    assert s.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 2
    assert s.stderr == ""
    assert s.stop() == 0


def test_sigint_with_a_client_connected_exits_zero_promptly(serve):
    s = serve("echo:0")
    with socket.create_connection(("127.0.0.1", s.port("tcp")), timeout=5) as c:
        c.sendall(b"x")
        assert c.recv(10) == b"x"
        t0 = time.monotonic()
        s.signal(signal.SIGINT)
        assert s.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 2
        c.settimeout(2)
        try:
            assert c.recv(10) == b""
        except ConnectionResetError:
            pass


def test_two_echo_instances_on_two_picked_ports(serve):
    # Two echo instances on two kernel-picked ports in one process.
    s = serve("-t", "-4", "echo:0", "echo:0", expect=2)
    ports = sorted({p for _, _, p, _ in s.listeners})
    assert len(ports) == 2
    for p in ports:
        assert tcp_exchange(p, b"port %d" % p) == b"port %d" % p



def test_short_connections_cost_one_epoll_ctl(serve, procs, tmp_path):
    # A connection is read as soon as it is accepted, registered with epoll only if it
    # stays open, and its close takes it out of epoll: one epoll_ctl (ADD) per connection,
    # no MOD or DEL. It was three: ADD, a MOD quieting it when closed, a DEL.
    # (The epoll path: by default echo's clients go through io_uring, tested below.)
    if shutil.which("strace") is None:
        pytest.skip("no strace")
    s = serve("-t", "--no-io-uring", "echo:0")
    port = s.port("tcp")
    out = tmp_path / "strace.txt"
    tr = procs(["strace", "-f", "-qq", "-o", str(out), "-e", "trace=accept4,read,epoll_ctl",
                "-p", str(s.pid)])
    deadline = time.monotonic() + 10
    pings = 0
    while not out.exists() or "accept4(" not in out.read_text():
        assert time.monotonic() < deadline, tr.stderr
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"ping")
            assert c.recv(16) == b"ping"
        pings += 1
        time.sleep(0.05)
    # Requests sent while the server cannot accept: each is there when its connection is.
    s.signal(signal.SIGSTOP)
    early = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
    for i, c in enumerate(early):
        c.sendall(b"early %d" % i)
    time.sleep(0.2)
    s.signal(signal.SIGCONT)
    for i, c in enumerate(early):
        assert c.recv(16) == b"early %d" % i
        c.close()
    n = 20
    for i in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"req %d" % i)
            assert c.recv(16) == b"req %d" % i
    # The last close seen by the server before strace lets go of it.
    deadline = time.monotonic() + 10
    while len(re.findall(r'read\(\d+, "", ', out.read_text())) < n + 5:
        assert time.monotonic() < deadline, out.read_text()[-2000:]
        time.sleep(0.05)
    tr.stop()
    text = out.read_text()
    ctl = re.findall(r"epoll_ctl\(\d+, EPOLL_CTL_(\w+), (\d+)", text)
    accepted = re.findall(r"accept4\(.*\) = (\d+)$", text, re.M)
    assert len(accepted) >= n + 5, text[-2000:]
    assert [op for op, _ in ctl if op != "ADD"] == [], ctl
    assert len(ctl) <= len(accepted), (ctl, accepted)
    # The early ones were answered before being registered: between the accept4 that
    # gave the descriptor and the read that took the request, no ADD for it.
    for i in range(5):
        m = re.search(r'read\((\d+), "early %d"' % i, text)
        assert m, text[-3000:]
        fd = m.group(1)
        a = [x for x in re.finditer(r"accept4\(.*\) = %s$" % fd, text, re.M)
             if x.start() < m.start()][-1]
        assert "EPOLL_CTL_ADD, %s," % fd not in text[a.end():m.start()], text[a.start():m.end()]


def io_uring_allowed():
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip() == "0"
    except OSError:
        return True     # a kernel without the switch: allowed to all


def test_ring_connections_make_no_system_call_of_their_own(serve, procs, tmp_path):
    # Through io_uring a connection's accept, receive, send and close are requests the
    # loop hands over with its one io_uring_enter a pass: none of the classic calls is
    # made for it. With --no-io-uring the same clients cost accept4, read, write, close.
    if shutil.which("strace") is None:
        pytest.skip("no strace")
    if not io_uring_allowed():
        pytest.skip("io_uring disabled by kernel.io_uring_disabled")
    calls = "accept4,read,write,recvfrom,sendto,close,epoll_ctl,io_uring_enter"
    counts = {}
    for mode in ("ring", "epoll"):
        s = serve("-t", *(["--no-io-uring"] if mode == "epoll" else []), "echo:0")
        port = s.port("tcp")
        tcp_exchange(port, b"warm")     # the ring is set up before strace attaches
        out = tmp_path / ("strace-%s.txt" % mode)
        tr = procs(["strace", "-f", "-qq", "-o", str(out), "-e", "trace=" + calls,
                    "-p", str(s.pid)])
        deadline = time.monotonic() + 10
        while not out.exists():
            assert time.monotonic() < deadline, tr.stderr
            time.sleep(0.05)
        time.sleep(0.5)     # attached: strace opens its output first
        n = 30
        for i in range(n):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"req %d" % i)
                assert c.recv(16) == b"req %d" % i
        time.sleep(0.3)     # the last close is the server's
        tr.stop()
        text = out.read_text()
        counts[mode] = {c: len(re.findall(r"(?:^|\] |^\d+ +)%s\(" % c, text, re.M))
                        for c in calls.split(",")}
        s.stop()
    ring, epoll = counts["ring"], counts["epoll"]
    assert epoll["accept4"] >= n and epoll["close"] >= n, epoll
    for c in ("accept4", "read", "write", "recvfrom", "sendto", "close", "epoll_ctl"):
        assert ring[c] == 0, ring
    assert 0 < ring["io_uring_enter"] <= 6 * n, ring
