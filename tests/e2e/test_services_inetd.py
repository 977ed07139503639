"""Conformance: sockflow's classic services against a real inetd's internal ones
(Debian's openbsd-inetd), byte for byte where the bytes are fixed.

inetd runs in the foreground (-i) with a private configuration bound to 127.0.0.1; its
internal services take their well-known ports, so this needs root and those ports free
(skipped otherwise, saying why). The system's inetd configuration and services are never
touched; the inetd started here is stopped by its pid. Debian's inetd ignores datagrams
from 127/8, so the UDP answers are compared inside a network namespace made for the
test (netns_udp_compare.py)."""
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import ROOT, SOCKFLOW
from svc_helpers import (DAYTIME_RE, chargen_stream, connect, daytime_seconds, port_free,
                         read_exactly, read_to_eof, rfc868_seconds)

INETD = "/usr/sbin/inetd"
PORTS = {"echo": 7, "discard": 9, "chargen": 19, "daytime": 13, "time": 37}


def _need_inetd():
    if os.geteuid() != 0:
        pytest.skip("inetd's internal services take ports below 1024: needs root")
    if not os.path.exists(INETD):
        subprocess.run(["sh", os.path.join(ROOT, "tests", "deps.sh")], timeout=900,
                       stdout=subprocess.DEVNULL)
    if not os.path.exists(INETD):
        pytest.skip("openbsd-inetd is not installed and could not be installed")


def _env_like_inetd():
    # inetd launders the environment: give sockflow the same (no TZ) for daytime.
    env = dict(os.environ)
    env.pop("TZ", None)
    return env


@pytest.fixture
def inetd(tmp_path, procs):
    _need_inetd()
    busy = [p for p in PORTS.values() if not port_free(p)]
    if busy:
        pytest.skip(f"tcp ports {busy} are taken on 127.0.0.1: cannot run inetd beside")
    conf = tmp_path / "inetd.conf"
    conf.write_text("".join(f"127.0.0.1:{n} stream tcp nowait root internal\n" for n in PORTS))
    # inetd launders the environment itself; without any PATH it crashes (Debian 0.20221205).
    p = procs([INETD, "-i", "-d", str(conf)], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    deadline = time.monotonic() + 10
    for port in PORTS.values():
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or not p.alive():
                    pytest.fail(f"inetd did not listen on 127.0.0.1:{port}: {p.stderr}")
                time.sleep(0.05)
    return PORTS


@pytest.fixture
def ours(serve):
    s = serve("-t", "-4", *[f"{n}:0" for n in PORTS], env=_env_like_inetd())
    return {n: s.port("tcp", n) for n in PORTS}


def _exchange(port, data):
    with connect(port) as s:
        t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        t.start()
        got = read_to_eof(s)
        t.join(10)
    return got


def test_echo_same_bytes(inetd, ours):
    data = os.urandom(256 * 1024) + b"\r\n\0" * 100
    assert _exchange(inetd["echo"], data) == data
    assert _exchange(ours["echo"], data) == data


def test_discard_same(inetd, ours):
    data = os.urandom(128 * 1024)
    assert _exchange(inetd["discard"], data) == b""
    assert _exchange(ours["discard"], data) == b""


def test_chargen_first_64k_identical(inetd, ours):
    with connect(inetd["chargen"]) as s:
        theirs = read_exactly(s, 65536)
    with connect(ours["chargen"]) as s:
        mine = read_exactly(s, 65536)
    assert len(mine) == 65536
    assert mine == theirs
    assert mine == chargen_stream(65536)


def test_daytime_same_format_and_time(inetd, ours):
    with connect(inetd["daytime"]) as s:
        theirs = read_to_eof(s)
    with connect(ours["daytime"]) as s:
        mine = read_to_eof(s)
    assert DAYTIME_RE.match(theirs), theirs
    assert DAYTIME_RE.match(mine), mine
    assert len(mine) == len(theirs) == 26
    assert abs(daytime_seconds(mine) - daytime_seconds(theirs)) <= 2


def test_time_same_value(inetd, ours):
    with connect(inetd["time"]) as s:
        theirs = read_to_eof(s)
    with connect(ours["time"]) as s:
        mine = read_to_eof(s)
    assert len(mine) == len(theirs) == 4
    assert abs(rfc868_seconds(mine) - rfc868_seconds(theirs)) <= 2


def test_udp_answers_same_as_inetd_in_a_network_namespace(tmp_path):
    _need_inetd()
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare or ip missing")
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        r = subprocess.run(["unshare", "--net", "/usr/bin/python3",
                            os.path.join(here, "netns_udp_compare.py"), SOCKFLOW, INETD,
                            str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail("the namespace comparison did not finish in 60 s")
    if r.returncode != 0 and "unshare" in r.stderr:
        pytest.skip(f"cannot make a network namespace here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert "error" not in got, got
    theirs, mine = got["inetd"], got["sockflow"]
    for key in ("echo", "discard", "chargen"):
        assert mine[key] == theirs[key], key
    assert DAYTIME_RE.match(bytes.fromhex(mine["daytime"]))
    assert DAYTIME_RE.match(bytes.fromhex(theirs["daytime"]))
    assert abs(rfc868_seconds(bytes.fromhex(mine["time"])) -
               rfc868_seconds(bytes.fromhex(theirs["time"]))) <= 2 + (mine["at"] - theirs["at"])
    # sockflow never answers a service port or a low port (Debian's inetd, as built,
    # answers both: the comparison stops at what the table requires).
    assert mine["from_port_19"] is None and mine["from_port_1000"] is None
