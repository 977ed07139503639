"""`sockflow connect -z HOST PORTS`: the open ports found exactly among closed ones, TCP
and UDP, IPv4 and IPv6, the JSON report, the bound on descriptors. Whole-range scans run
in a network namespace of their own, where no other process's listener can be found."""
import json
import os
import re
import shutil
import socket
import subprocess
import textwrap
import threading

import pytest

from conftest import SOCKFLOW, assert_no_sanitizer_report, free_port, have_ipv6_loopback, \
    run_sockflow

needs_ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback (::1)")


def can_unshare():
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0


needs_netns = pytest.mark.skipif(not can_unshare(), reason="needs root and unshare --net")


def listeners(n, host="127.0.0.1", udp=False):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    for _ in range(n):
        s = socket.socket(fam, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        s.bind((host, 0))
        if not udp:
            s.listen(8)
        socks.append(s)
    return socks


def scan(args, timeout=60):
    r = run_sockflow(["connect", "-z", *args], timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def test_open_ports_among_closed_found_exactly():
    socks = listeners(3)
    try:
        open_ports = sorted(s.getsockname()[1] for s in socks)
        closed = [free_port() for _ in range(3)]
        ports = ",".join(map(str, open_ports + closed))
        rc, out, err = scan(["127.0.0.1", ports])
    finally:
        for s in socks:
            s.close()
    assert rc == 0, err
    assert err == ""
    got = [re.fullmatch(r"127\.0\.0\.1:(\d+) tcp open \d+\.\d{3} ms", l) for l in out.splitlines()]
    assert all(got), out
    assert sorted(int(m.group(1)) for m in got) == open_ports


def test_verbose_lists_every_port_and_a_summary():
    (s,) = listeners(1)
    port = s.getsockname()[1]
    closed = free_port()
    try:
        rc, out, err = scan(["-v", "127.0.0.1", f"{port},{closed}"])
    finally:
        s.close()
    assert rc == 0
    lines = out.splitlines()
    assert re.fullmatch(rf"127\.0\.0\.1:{port} tcp open \d+\.\d+ ms", lines[0]), lines
    assert re.fullmatch(rf"127\.0\.0\.1:{closed} tcp closed \d+\.\d+ ms", lines[1]), lines
    assert re.fullmatch(r"scanned 2 tcp ports of 127\.0\.0\.1 in \d+\.\d+ s: 1 open, 1 closed, "
                        r"0 filtered, 0 open\|filtered\n", err), err


def test_nothing_open_exits_1():
    rc, out, err = scan(["127.0.0.1", str(free_port())])
    assert (rc, out, err) == (1, "", "")


def test_json_fields():
    (s,) = listeners(1)
    port = s.getsockname()[1]
    closed = free_port()
    try:
        rc, out, err = scan(["--json", "127.0.0.1", f"{closed},{port}"])
    finally:
        s.close()
    assert rc == 0 and err == ""
    doc = json.loads(out)
    assert doc["host"] == "127.0.0.1" and doc["proto"] == "tcp"
    assert (doc["open"], doc["closed"], doc["filtered"], doc["open_filtered"]) == (1, 1, 0, 0)
    assert isinstance(doc["seconds"], float)
    assert [p["port"] for p in doc["ports"]] == [closed, port]    # in the order given
    c, o = doc["ports"]
    assert (c["state"], c["error"]) == ("closed", "ECONNREFUSED")
    assert (o["state"], o["error"]) == ("open", "")
    assert all(isinstance(p["us"], int) and 0 <= p["us"] < 10_000_000 for p in doc["ports"])


def test_udp_closed_by_icmp_open_by_reply_and_silent():
    echo, silent = listeners(2, udp=True)
    closed = free_port("udp")
    ep, sp = echo.getsockname()[1], silent.getsockname()[1]

    def answer():
        echo.settimeout(10)
        try:
            data, peer = echo.recvfrom(100)
            echo.sendto(b"here", peer)
        except OSError:
            pass
    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        rc, out, err = scan(["-u", "--json", "-w", "0.5", "127.0.0.1", f"{closed},{ep},{sp}"])
        t.join(10)
    finally:
        echo.close()
        silent.close()
    assert rc == 0, err
    states = {p["port"]: (p["state"], p["error"]) for p in json.loads(out)["ports"]}
    assert states == {closed: ("closed", "ECONNREFUSED"), ep: ("open", ""),
                      sp: ("open|filtered", "ETIMEDOUT")}


@needs_ipv6
def test_ipv6():
    (s,) = listeners(1, host="::1")
    port = s.getsockname()[1]
    try:
        rc, out, err = scan(["-v", "::1", f"{port},{free_port(host='::1')}"])
    finally:
        s.close()
    assert rc == 0, err
    assert out.splitlines()[0].startswith(f"[::1]:{port} tcp open ")
    assert " tcp closed " in out.splitlines()[1]


def test_held_under_the_descriptor_limit():
    # --parallel 1000 with 40 descriptors: the scan keeps under the limit and finishes.
    if shutil.which("prlimit") is None:
        pytest.skip("no prlimit")
    socks = listeners(2)
    try:
        ports = sorted(s.getsockname()[1] for s in socks)
        lo = min(ports) - 300
        r = subprocess.run(["prlimit", "--nofile=40", SOCKFLOW, "connect", "-z", "--parallel",
                            "1000", "127.0.0.1", f"{max(lo, 1)}-{max(ports)}"],
                           capture_output=True, timeout=60)
    finally:
        for s in socks:
            s.close()
    assert_no_sanitizer_report(r.stderr)
    assert r.returncode == 0, r.stderr
    found = [int(l.split()[0].rsplit(":", 1)[1]) for l in r.stdout.decode().splitlines()]
    assert set(ports) <= set(found)


@pytest.mark.parametrize("ports, message", [
    ("99999", "ports 99999: not a port from 1 to 65535 or a range of them"),
    ("0", "ports 0: not a port from 1 to 65535 or a range of them"),
    ("25-20", "ports 25-20: the range runs backwards"),
    ("22,,80", "ports '': not a port or a range LOW-HIGH"),
    ("ssh", "ports ssh: not a port from 1 to 65535 or a range of them"),
    ("-q 1 22", "-q, -i and -C are for a connection, not -z"),
    ("-C 22", "-q, -i and -C are for a connection, not -z"),
    ("--trace 22", "-z does not trace: its probes are many connects at once"),
])
def test_bad_ports_exit_2(ports, message):
    *opts, ports = ports.split()
    rc, out, err = scan([*opts, "127.0.0.1", ports])
    assert (rc, out) == (2, "")
    assert err == f"sockflow connect: {message}\nTry 'sockflow connect --help'.\n"


NETNS_SCRIPT = textwrap.dedent("""
    import json, socket, subprocess, sys
    socks = []
    for _ in range(4):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8); socks.append(s)
    r = subprocess.run([sys.argv[1], "connect", "-z", "--json", "127.0.0.1", "1-65535"],
                       capture_output=True, timeout=120)
    print(json.dumps({"listening": sorted(s.getsockname()[1] for s in socks),
                      "rc": r.returncode, "out": r.stdout.decode(), "err": r.stderr.decode()}))
""")


@needs_netns
def test_whole_range_in_a_namespace_found_exactly():
    # Every port of 127.0.0.1 with nobody else's listeners around: exactly ours are open,
    # every other port closed (a connection to itself is not an open port).
    r = subprocess.run(["unshare", "--net", "sh", "-c",
                        f"ip link set lo up && exec /usr/bin/python3 -c '{NETNS_SCRIPT}' {SOCKFLOW}"],
                       capture_output=True, timeout=180)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert_no_sanitizer_report(res["err"])
    assert res["rc"] == 0, res["err"]
    doc = json.loads(res["out"])
    open_ports = [p["port"] for p in doc["ports"] if p["state"] == "open"]
    assert open_ports == res["listening"]
    assert (doc["open"], doc["closed"], doc["filtered"]) == (4, 65531, 0)
    assert len(doc["ports"]) == 65535


@needs_netns
def test_no_answer_is_filtered_after_the_timeout():
    # A route into nowhere (out of lo to an address nobody holds): SYNs vanish, so each
    # port is filtered when -w runs out; an unreachable route is filtered at once.
    r = subprocess.run(["unshare", "--net", "sh", "-c",
                        "ip link set lo up && ip route add 10.99.0.0/24 dev lo && "
                        "ip route add unreachable 10.98.0.0/24 && "
                        f"{SOCKFLOW} connect -z --json -w 0.3 10.99.0.2 80-81; echo; "
                        f"{SOCKFLOW} connect -z --json 10.98.0.5 80"],
                       capture_output=True, timeout=60)
    assert_no_sanitizer_report(r.stderr)
    silent, unreachable = [json.loads(l) for l in r.stdout.decode().splitlines() if l]
    assert [(p["state"], p["error"]) for p in silent["ports"]] == [("filtered", "ETIMEDOUT")] * 2
    assert all(280_000 <= p["us"] < 5_000_000 for p in silent["ports"])
    assert [(p["state"], p["error"]) for p in unreachable["ports"]] == \
        [("filtered", "EHOSTUNREACH")]


def test_fixed_source_port_scans_one_port_at_a_time():
    # -p: every probe leaves from the same port, so they go one after another (a refused
    # socket keeps its port; an open one is reset, which leaves no TIME_WAIT to wait out).
    (s,) = listeners(1)
    port = s.getsockname()[1]
    src = free_port()
    try:
        rc, out, err = scan(["-v", "-p", str(src), "127.0.0.1",
                             f"{free_port()},{port},{free_port()}"])
    finally:
        s.close()
    assert rc == 0, err
    states = [l.split()[2] for l in out.splitlines()]
    assert states == ["closed", "open", "closed"]
