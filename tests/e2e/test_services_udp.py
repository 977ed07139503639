"""The classic services over UDP, and what keeps them from being used for loops and
reflection: no reply to service ports or low ports, a per-source budget, counted drops
logged at most once a second."""
import os
import re
import socket
import threading
import time

import pytest

from svc_helpers import (DAYTIME_RE, chargen_line, port_free, rfc868_seconds, udp_ask,
                         udp_socket)

SERVICES = ["echo:0", "discard:0", "chargen:0", "daytime:0", "time:0"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="binding a port below 1024 needs root")


@pytest.fixture
def srv(serve):
    return serve("-u", "-4", *SERVICES)


def test_echo_whole_datagrams(srv):
    port = srv.port("udp", "echo")
    for size in (1, 1472, 65507):
        data = os.urandom(size)
        assert udp_ask(port, data) == data


def test_echo_never_sends_a_cut_reply(serve):
    s = serve("-u", "-4", "--dgram-max", "1000", "echo:0")
    port = s.port("udp", "echo")
    assert udp_ask(port, b"a" * 1000) == b"a" * 1000
    assert udp_ask(port, b"a" * 1001, timeout=0.5) is None


def test_discard_never_answers(srv):
    assert udp_ask(srv.port("udp", "discard"), b"anything", timeout=0.5) is None


def test_chargen_one_line_per_datagram_ring_advancing(serve):
    # 97 requests back to back from one address outrun the default burst (10): no budget.
    port = serve("-u", "-4", "--udp-rate", "0", "chargen:0").port("udp", "chargen")
    replies = [udp_ask(port, b"") for _ in range(97)]
    assert replies == [chargen_line(i) for i in range(97)]
    assert all(len(r) == 74 for r in replies)


def test_daytime_and_time(srv):
    line = udp_ask(srv.port("udp", "daytime"))
    assert DAYTIME_RE.match(line), line
    four = udp_ask(srv.port("udp", "time"))
    assert abs(rfc868_seconds(four) - time.time()) <= 2


def test_replies_are_small_for_small_requests(srv):
    for name in ("chargen", "daytime", "time"):
        r = udp_ask(srv.port("udp", name), b"")
        assert r is not None and len(r) <= 512


def test_ipv6_loopback(serve):
    s = serve("-u", "echo:0")
    if not any(h == "::1" for _, h, _, _ in s.listeners):
        pytest.skip("no IPv6 loopback here")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as c:
        c.settimeout(1)
        c.sendto(b"v6", ("::1", s.port("udp", "echo", "::1")))
        assert c.recvfrom(100)[0] == b"v6"


# ---- no loops ----

def _free_or_skip(port):
    if not port_free(port, socket.SOCK_DGRAM):
        pytest.skip(f"udp port {port} is taken on 127.0.0.1")


@needs_root
@pytest.mark.parametrize("src_port", [19, 7, 13, 37, 9])
def test_no_reply_to_a_classic_service_port(srv, src_port):
    _free_or_skip(src_port)
    for name in ("echo", "chargen", "daytime", "time"):
        assert udp_ask(srv.port("udp", name), b"loop?", bind=("127.0.0.1", src_port),
                       timeout=0.3) is None
    # the same request from an ordinary port is answered
    assert udp_ask(srv.port("udp", "echo"), b"loop?") == b"loop?"
    line = srv.wait_line(r"udp: no reply to .* from a service port", stream="err")
    assert f"127.0.0.1:{src_port})" in line


@needs_root
def test_low_ports_refused_unless_allowed(serve):
    _free_or_skip(1000)
    _free_or_skip(19)
    s = serve("-u", "-4", "echo:0")
    assert udp_ask(s.port("udp", "echo"), b"x", bind=("127.0.0.1", 1000), timeout=0.3) is None
    s.wait_line(r"from a port below 1024 \(last 127\.0\.0\.1:1000\)", stream="err")
    a = serve("-u", "-4", "--allow-low-ports", "echo:0")
    assert udp_ask(a.port("udp", "echo"), b"x", bind=("127.0.0.1", 1000)) == b"x"
    # the classic services' ports stay refused
    assert udp_ask(a.port("udp", "echo"), b"x", bind=("127.0.0.1", 19), timeout=0.3) is None


def test_no_reply_to_a_port_this_server_serves(serve):
    # Two sockflow echo servers on the same port number must not answer each other.
    s = serve("-u", "-4", "echo:0", "chargen:0")
    echo, chargen = s.port("udp", "echo"), s.port("udp", "chargen")
    with udp_socket(("127.0.0.2", chargen), timeout=0.3) as c:
        c.sendto(b"x", ("127.0.0.1", echo))
        with pytest.raises(socket.timeout):
            c.recvfrom(100)


# ---- reflection: a budget per source ----

def _flood(port, src, seconds, counter, stop):
    """Send from src about 5,000 datagrams a second for seconds; count the replies."""
    with udp_socket((src, 0), timeout=0.05) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            for _ in range(10):
                s.sendto(b"flood", ("127.0.0.1", port))
            time.sleep(0.002)
            try:
                while True:
                    s.recvfrom(100)
                    counter[0] += 1
            except (socket.timeout, BlockingIOError):
                pass
        s.settimeout(0.3)
        try:
            while True:
                s.recvfrom(100)
                counter[0] += 1
        except socket.timeout:
            pass
        counter[1] = time.monotonic() - (end - seconds)


def test_flood_held_to_budget_while_another_source_is_served(serve):
    s = serve("-u", "-4", "--udp-rate", "20/s", "--udp-burst", "10", "echo:0")
    port = s.port("udp", "echo")
    counter, stop = [0, 0.0], threading.Event()
    t = threading.Thread(target=_flood, args=(port, "127.0.0.2", 2.0, counter, stop))
    t.start()
    try:
        time.sleep(0.3)
        served = 0
        for i in range(10):
            if udp_ask(port, b"%d" % i, bind=("127.0.0.3", 0), timeout=1.0) == b"%d" % i:
                served += 1
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(10)
    assert served == 10
    replies, elapsed = counter
    assert 10 <= replies <= 10 + 20 * elapsed + 5, (replies, elapsed)
    s.wait_line(r"over the per-source budget \(last 127\.0\.0\.2:\d+\)", stream="err")


def test_no_rate_limit_when_asked(serve):
    s = serve("-u", "-4", "--udp-rate", "0", "echo:0")
    port = s.port("udp", "echo")
    with udp_socket(timeout=1.0) as c:
        for i in range(300):
            c.sendto(b"%d" % i, ("127.0.0.1", port))
            assert c.recvfrom(100)[0] == b"%d" % i


@needs_root
def test_drops_logged_at_most_once_a_second(srv):
    _free_or_skip(19)
    port = srv.port("udp", "echo")
    with udp_socket(("127.0.0.1", 19)) as c:
        end = time.monotonic() + 2.5
        n = 0
        while time.monotonic() < end:
            c.sendto(b"x", ("127.0.0.1", port))
            n += 1
            time.sleep(0.005)
    # Every drop is told, the last ones within about two seconds (the log waits for
    # its second, and the sweep runs once a second).
    deadline = time.monotonic() + 5
    while True:
        lines = [l for l in srv.stderr.splitlines() if "udp: no reply" in l]
        told = sum(int(re.search(r"no reply to (\d+) datagram", l).group(1)) for l in lines)
        if told >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert told == n
    assert 1 <= len(lines) <= 5, lines
    assert all("from a service port (last 127.0.0.1:19)" in l for l in lines)


def _in_namespace(script, *args):
    """Run script (in this directory) under `unshare --net` and return its JSON; skips
    with the reason when a private network namespace cannot be made here."""
    import json
    import shutil
    import subprocess

    from conftest import SOCKFLOW
    if os.geteuid() != 0:
        pytest.skip("a network namespace with a veth pair needs root")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare or ip missing")
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        r = subprocess.run(["unshare", "--net", "/usr/bin/python3", os.path.join(here, script),
                            SOCKFLOW, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} did not finish in 60 s")
    if r.returncode != 0 and "unshare" in r.stderr:
        pytest.skip(f"cannot make a network namespace here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def multihomed():
    return _in_namespace("netns_udp_hosts.py")


def test_host_address_without_broadcast_is_answered(multihomed):
    """RELIABILITY.md 'addresses without broadcast': an address added without `brd`
    (getifaddrs then reports the address itself as its broadcast) is a host address:
    a datagram to it is answered."""
    assert multihomed["host_no_brd"] == {"reply": "which address?", "from": "10.9.0.1"}


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_reply_leaves_from_the_address_asked(multihomed, family):
    """RELIABILITY.md 'reply source': on the wildcard address, a request to the host's
    second address is answered from that address (IP_PKTINFO / IPV6_PKTINFO), so a
    connected client sees the reply."""
    want = "10.9.0.2" if family == "v4" else "fd00:9::2"
    assert multihomed[f"second_{family}"] == {"reply": "which address?", "from": want}


@pytest.mark.parametrize("loops", ["1", "2"])
def test_socket_bound_to_a_broadcast_address_never_answers(loops):
    """RELIABILITY.md 'bad sources': a socket bound to one address takes its datagrams'
    destination from that address rather than from IP_PKTINFO; bound to an interface's
    broadcast address, it still answers nothing (the drop is logged), while the one bound
    to the host address answers. With two loops, both read the guard's table of broadcast
    addresses, without a lock."""
    out = _in_namespace("netns_udp_bound.py", loops)
    assert out["unicast"] == {"reply": "who is there?", "from": "10.8.0.1"}
    assert out["broadcast"] is None
    assert "1 to or from a broadcast" in out["log"]


@pytest.fixture(scope="module")
def grouped():
    return _in_namespace("netns_udp_gso.py")


def test_grouped_replies_leave_from_the_address_asked(grouped):
    """Replies of one receive to one peer leave as one UDP_SEGMENT send (the client, with
    UDP_GRO on, reads the twenty as one of 20,000 bytes cut at 1,000), every byte in order,
    and from the address the burst was sent to: the source's IP_PKTINFO and UDP_SEGMENT
    go together."""
    assert grouped["small"] == {"reads": [[20000, 1000, "127.0.0.2"]], "intact": True}


def test_replies_over_the_mtu_go_one_by_one(grouped):
    """A group the kernel refuses (a segment larger than lo's MTU of 1500 allows) is sent
    again one datagram at a time: all twenty arrive whole; the server says it once, keeps
    grouping smaller replies, and sends later large ones one by one at once."""
    for burst in ("big", "big_again"):
        assert grouped[burst] == {"reads": [[2000, 0, "127.0.0.1"]] * 20, "intact": True}
    assert grouped["log"].count("UDP_SEGMENT refused for 2000-byte replies") == 1, \
        grouped["log"]
