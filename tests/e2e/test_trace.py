"""--trace, --trace=json, --explain, --trace-file and --trace-data on serve and connect:
the calls of a real exchange in their exact order, with the states the kernel reported."""
import difflib
import json
import os
import re
import socket
import threading
import time

import pytest

from conftest import SOCKFLOW, Server, free_port, run_sockflow
from tracenorm import normalise, tw_overflows

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def golden(name, text):
    """Compare with golden/NAME; SOCKFLOW_UPDATE_GOLDEN=1 rewrites it instead."""
    path = os.path.join(GOLDEN, name)
    if os.environ.get("SOCKFLOW_UPDATE_GOLDEN") == "1":
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        want = f.read()
    diff = difflib.unified_diff(want.splitlines(), text.splitlines(), "golden/" + name, "run",
                                lineterm="")
    assert text == want, "\n".join(diff)


def json_events(text):
    """Every line is one JSON object; the call events, EAGAIN retries left out."""
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [e for e in events if e["event"] == "call" and e["errno"] != "EAGAIN"]


def wait_events(path, pred, timeout=5.0):
    """Events of the trace file once pred(events) holds; fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        text = open(path).read() if os.path.exists(path) else ""
        events = json_events(text)
        if pred(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"trace never complete: {text}")
        time.sleep(0.02)


def python_client(port, data=b"hello\n", pause=0.0):
    """Send, read the echo, then half-close and read to end: a fixed order of events.
    pause: wait before the half-close, so the server's state after its write is read
    before our FIN arrives."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            assert chunk
            got += chunk
        time.sleep(pause)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(65536) == b""
        return got


class OneShotServer:
    """A plain Python TCP server for one client: read to end, answer, wait, close."""

    def __init__(self, reply=b"hello\n", linger=0.2):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.got = b""
        self.reply, self.linger = reply, linger
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        c, _ = self.sock.accept()
        with c:
            c.settimeout(10)
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                self.got += chunk
            c.sendall(self.reply)
            time.sleep(self.linger)
        self.sock.close()

    def join(self):
        self.thread.join(10)


def shape(events):
    return [(e["side"], e["call"]) for e in events]


def test_json_trace_of_a_serve_connect_exchange(tmp_path):
    """The server's calls, in order, with the states the kernel reported after each."""
    trace = str(tmp_path / "server.jsonl")
    srv = Server(["-4", "-t", "--trace=json", "--trace-file", trace, "echo:0"])
    try:
        assert python_client(srv.port()) == b"hello\n"
        events = wait_events(trace, lambda ev: sum(e["call"] == "close" for e in ev) >= 1)
    finally:
        assert srv.stop() == 0
    events = json_events(open(trace).read())
    calls = [e["call"] for e in events]
    assert calls == ["socket", "setsockopt", "bind", "listen", "accept4", "read", "write",
                     "read", "close", "close"], calls
    sock, opt, bind, listen, acc, rd, wr, rd0, close_conn, close_listen = events
    assert all(e["side"] == "server" and e["proto"] == "tcp" for e in events)
    assert sock["result"] == sock["fd"] and sock["state"] == "CLOSE"
    assert opt["args"] == "SO_REUSEADDR=1"
    assert bind["state"] == "CLOSE" and bind["local"] == f"127.0.0.1:{srv.port()}"
    assert listen["state"] == "LISTEN" and listen["accept_queue"] == 0
    lfd = sock["result"]
    assert {bind["fd"], listen["fd"], acc["fd"], close_listen["fd"]} == {lfd}
    # accept: a new descriptor, already ESTABLISHED, with its own peer
    assert acc["result"] not in (lfd, -1) and acc["state"] == "ESTABLISHED"
    assert acc["rtt_us"] >= 0 and acc["peer"].startswith("127.0.0.1:")
    cfd = acc["result"]
    assert rd["fd"] == wr["fd"] == rd0["fd"] == close_conn["fd"] == cfd
    assert rd["id"] == wr["id"] == rd0["id"] == close_conn["id"] == 1
    assert (rd["result"], rd["state"]) == (6, "ESTABLISHED")
    # the client may read the echo and send its FIN before the state is read
    assert wr["result"] == 6 and wr["state"] in ("ESTABLISHED", "CLOSE_WAIT")
    assert (rd0["result"], rd0["state"]) == (0, "CLOSE_WAIT")
    assert close_conn["state_before"] == "CLOSE_WAIT"
    assert close_conn["state"] in ("LAST_ACK", "CLOSE")
    assert close_listen["state_before"] == "LISTEN" and close_listen["state"] == "CLOSE"
    times = [e["t_ns"] for e in events]
    assert times == sorted(times), "monotonic time stamps"


def test_json_trace_of_the_client(tmp_path):
    overflows = tw_overflows()
    peer = OneShotServer()
    r = run_sockflow(["connect", "--trace=json", "127.0.0.1", str(peer.port)], input=b"hello\n")
    peer.join()
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello\n" and peer.got == b"hello\n"
    events = json_events(r.stderr.decode())
    assert [e["call"] for e in events] == ["socket", "connect", "connect-done", "write",
                                          "shutdown", "read", "read", "close"]
    sock, conn, done, wr, shut, rd, rd0, close = events
    assert all(e["side"] == "client" for e in events)
    assert conn["args"] == f"127.0.0.1:{peer.port}" and conn["peer"] == conn["args"]
    assert conn["result"] == 0 or conn["errno"] == "EINPROGRESS"
    assert conn["state"] in ("SYN_SENT", "ESTABLISHED")
    assert done["state"] == "ESTABLISHED"
    # the kernel picked the caller's own number
    assert done["local"].startswith("127.0.0.1:") and not done["local"].endswith(":0")
    assert (wr["result"], wr["state"]) == (6, "ESTABLISHED")
    assert shut["args"] == "SHUT_WR" and shut["state"] in ("FIN_WAIT1", "FIN_WAIT2")
    assert (rd["result"], rd["state"]) == (6, "FIN_WAIT2")
    assert rd0["result"] == 0
    if close["state"] == "CLOSE" and tw_overflows() > overflows >= 0:
        pytest.skip("the kernel's TIME_WAIT table overflowed: the connection was dropped")
    assert close["state"] == "TIME_WAIT", "the side that hung up first ends in TIME_WAIT"


def test_connection_refused_names_the_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # bound, never listening: refused
        r = run_sockflow(["connect", "--trace", "127.0.0.1", str(port)])
    assert r.returncode == 1
    err = r.stderr.decode()
    assert re.search(r"connect(-done)? +fd=\d+ +127\.0\.0\.1:\d+ += -1 ECONNREFUSED", err), err


def test_explain_golden_client():
    overflows = tw_overflows()
    peer = OneShotServer()
    r = run_sockflow(["connect", "--explain", "127.0.0.1", str(peer.port)], input=b"hello\n")
    peer.join()
    assert r.returncode == 0, r.stderr
    # Whether the peer's ACK of our FIN beat the state read after shutdown() is up to the
    # scheduler (the peer thread wakes on another core): FIN_WAIT1 or FIN_WAIT2.
    text = re.sub(r"FIN_WAIT[12]", "FIN_WAIT*", normalise(r.stderr.decode()))
    if tw_overflows() > overflows >= 0 and "TIME_WAIT" not in text:
        pytest.skip("the kernel's TIME_WAIT table overflowed: the connection was dropped")
    golden("explain-connect.txt", text)


def test_explain_golden_server(tmp_path):
    trace = str(tmp_path / "server.txt")
    srv = Server(["-4", "-t", "--explain", "--trace-file", trace, "echo:0"])
    try:
        assert python_client(srv.port(), pause=0.2) == b"hello\n"
        deadline = time.monotonic() + 5
        while " close " not in open(trace).read() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        assert srv.stop() == 0
    golden("explain-serve.txt", normalise(open(trace).read()))


def test_explain_refused_golden():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        r = run_sockflow(["connect", "--explain", "127.0.0.1", str(s.getsockname()[1])])
    assert r.returncode == 1
    golden("explain-refused.txt", normalise(r.stderr.decode()))


def test_text_trace_is_aligned():
    peer = OneShotServer(linger=0)
    r = run_sockflow(["connect", "--trace", "127.0.0.1", str(peer.port)], input=b"hello\n")
    peer.join()
    lines = [l for l in r.stderr.decode().splitlines() if re.match(r"^ *\d+\.\d{6} ", l)]
    assert len(lines) >= 7
    assert len({l.index(" = ") for l in lines}) == 1, "\n".join(lines)
    assert len({l.index("fd=") for l in lines}) == 1


def test_trace_data_hex_dump():
    peer = OneShotServer(reply=b"world\n", linger=0)
    r = run_sockflow(["connect", "--trace-data", "127.0.0.1", str(peer.port)], input=b"hello\n")
    peer.join()
    err = r.stderr.decode()
    assert re.search(r"0000  68 65 6c 6c 6f 0a +hello\.", err), err
    assert re.search(r"0000  77 6f 72 6c 64 0a +world\.", err), err
    peer = OneShotServer(linger=0)
    r = run_sockflow(["connect", "--trace=json", "--trace-data", "127.0.0.1", str(peer.port)],
                     input=b"hi\n")
    peer.join()
    writes = [e for e in json_events(r.stderr.decode()) if e["call"] == "write"]
    assert writes[0]["data"] == "68690a" and writes[0]["data_len"] == 3


def test_no_payload_without_trace_data():
    peer = OneShotServer(linger=0)
    r = run_sockflow(["connect", "--trace=json", "127.0.0.1", str(peer.port)], input=b"hi\n")
    peer.join()
    assert all("data" not in e for e in json_events(r.stderr.decode()))


def test_trace_file_leaves_stderr_clean(tmp_path):
    peer = OneShotServer(linger=0)
    path = tmp_path / "t.txt"
    r = run_sockflow(["connect", "--trace-file", str(path), "127.0.0.1", str(peer.port)],
                     input=b"x\n")
    peer.join()
    assert r.returncode == 0 and r.stderr == b""
    assert " connect " in path.read_text()


@pytest.mark.parametrize("args, msg", [
    (["--trace=xml"], "--trace=xml: text or json"),
    (["--trace-file", ""], "--trace-file: name a file"),
])
def test_bad_trace_options_are_usage_errors(args, msg):
    r = run_sockflow(["connect", *args, "127.0.0.1", "9"])
    assert r.returncode == 2 and msg in r.stderr.decode()


def test_trace_file_that_cannot_be_opened(tmp_path):
    r = run_sockflow(["connect", "--trace-file", str(tmp_path / "no" / "such"), "127.0.0.1", "9"])
    assert r.returncode == 1 and "--trace-file" in r.stderr.decode()


def test_lines_stay_whole_with_several_loops(tmp_path):
    """serve -j 2: two threads write the trace; every line must still parse on its own."""
    trace = str(tmp_path / "t.jsonl")
    srv = Server(["-4", "-t", "-j", "2", "--trace=json", "--trace-data", "--trace-file", trace,
                  "echo:0"])
    try:
        threads = [threading.Thread(target=python_client, args=(srv.port(), b"x" * 3000))
                   for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        wait_events(trace, lambda ev: sum(e["call"] == "close" for e in ev) >= 16)
    finally:
        assert srv.stop() == 0
    events = [json.loads(line) for line in open(trace)]   # raises on a torn line
    accepts = [e for e in events if e["call"] == "accept4" and e["result"] >= 0]
    assert len(accepts) == 16
    assert len({e["fd"] for e in events if e["call"] == "listen"}) == 2   # SO_REUSEPORT pair


def test_udp_trace_has_letters_not_calls(tmp_path):
    trace = str(tmp_path / "u.jsonl")
    srv = Server(["-4", "-u", "--trace=json", "--explain", "--trace-file", trace, "echo:0"])
    try:
        r = run_sockflow(["connect", "-u", "-w", "0.5", "--trace=json", "127.0.0.1",
                          str(srv.port("udp"))], input=b"ping\n")
        assert r.stdout == b"ping\n"
        events = wait_events(trace, lambda ev: any(e["call"] == "sendmmsg" for e in ev))
    finally:
        srv.stop()
    calls = [e["call"] for e in events]
    assert "listen" not in calls and "accept4" not in calls
    rx = next(e for e in events if e["call"] == "recvmmsg")
    tx = next(e for e in events if e["call"] == "sendmmsg")
    client = json_events(r.stderr.decode())
    local = next(e["local"] for e in client if e["call"] == "connect")
    assert rx["result"] == 5 and f"from={local}" in rx["args"] and rx["proto"] == "udp"
    assert tx["result"] == 5 and f"to={local}" in tx["args"]
    assert "letter" in rx["explain"] and "return address" in rx["explain"]
    assert [e["call"] for e in client] == ["socket", "connect", "sendto", "read", "close"]
    assert all(e["state"] is None and e["proto"] == "udp" for e in client)


def bench_events(serve, mode, *args):
    srv = serve("-q", "-4", "--udp-rate", "0", "echo:0")
    proto = "udp" if mode == "udp" else "tcp"
    r = run_sockflow(["bench", mode, "127.0.0.1", str(srv.port(proto)), "-T", "1", *args,
                      "--trace=json"], timeout=30)
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stderr.decode().splitlines() if l.startswith("{")]


def test_bench_echo_trace_is_the_client_flow(serve):
    """bench traces each connection's calls as the client side: the flow in order."""
    evs = bench_events(serve, "echo", "-c", "1", "-n", "2", "-s", "16")
    calls = [e["call"] for e in evs]
    assert calls == ["socket", "connect", "write", "read", "write", "read", "close"], calls
    assert {e["side"] for e in evs} == {"client"}
    assert {e["id"] for e in evs} == {1}
    assert [e["result"] for e in evs if e["call"] in ("write", "read")] == [16, 16, 16, 16]
    assert evs[2]["state"] == "ESTABLISHED"


def test_bench_connect_trace_numbers_connections(serve):
    evs = bench_events(serve, "connect", "-c", "2", "-n", "4", "--src", "none")
    sockets = [e for e in evs if e["call"] == "socket"]
    assert len(sockets) >= 4
    assert {e["id"] for e in evs} == {1, 2}
    assert sum(e["call"] == "close" for e in evs) == len(sockets)


def test_bench_udp_trace_shows_the_batches(serve):
    evs = bench_events(serve, "udp", "-c", "1", "-n", "3")
    calls = [e["call"] for e in evs]
    assert calls[:2] == ["socket", "connect"]
    assert "sendmmsg" in calls and "recvmmsg" in calls
    assert all(e["proto"] == "udp" for e in evs)


def test_read_of_zero_after_shutdown_reports_time_wait():
    """The side that hung up first (shutdown) reads 0 once the peer hangs up too: its
    socket reads CLOSE, but the connection is in TIME_WAIT, found by its 4-tuple."""
    overflows = tw_overflows()
    peer = OneShotServer()
    r = run_sockflow(["connect", "--trace=json", "127.0.0.1", str(peer.port)], input=b"hello\n")
    peer.join()
    assert r.returncode == 0, r.stderr
    evs = json_events(r.stderr.decode())
    rd0 = [e for e in evs if e["call"] == "read" and e["result"] == 0 and e["proto"] == "tcp"]
    assert rd0, evs
    if rd0[-1]["state"] == "CLOSE" and tw_overflows() > overflows >= 0:
        pytest.skip("the kernel's TIME_WAIT table overflowed: the connection was dropped")
    assert rd0[-1]["state"] == "TIME_WAIT"
    assert rd0[-1]["peer"] == f"127.0.0.1:{peer.port}"


def test_explain_says_who_chose_the_source_port():
    """connect -s ADDR:PORT: the user bound the port, the kernel did not pick it."""
    peer = OneShotServer()
    src = free_port()
    r = run_sockflow(["connect", "--explain", "-s", f"127.0.0.1:{src}", "127.0.0.1",
                      str(peer.port)], input=b"hello\n")
    peer.join()
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    said = [l for l in err.splitlines() if "> connect(): someone dials" in l]
    assert said, err
    assert "kernel picked" not in said[0]
    assert f"chose itself with bind(), 127.0.0.1:{src}" in said[0]
    peer = OneShotServer()
    r = run_sockflow(["connect", "--explain", "-s", "127.0.0.1", "127.0.0.1", str(peer.port)],
                     input=b"hello\n")
    peer.join()
    assert "The kernel picked the caller's own number" in r.stderr.decode()


def test_udp_refused_is_explained_as_icmp():
    """A connected UDP socket learns of a closed port from an ICMP port unreachable, not
    a reset: the explanation says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_sockflow(["connect", "-u", "-w", "1", "--explain", "127.0.0.1", str(port)],
                     input=b"ping\n")
    err = r.stderr.decode()
    refused = [l for l in err.splitlines() if "ECONNREFUSED" in l and l.strip().startswith(">")]
    assert refused, err
    assert "ICMP port-unreachable" in refused[0] and "reset" not in refused[0].split("(UDP")[0]
