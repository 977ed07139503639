"""sockflow bench: every mode briefly against real servers on loopback, its JSON checked;
a stopped server, a corrupting server and a closed port. Speed is measured in bench/,
never here: these runs only check that the figures are sane and every wait is bounded."""
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SOCKFLOW, assert_no_sanitizer_report, free_port, run_sockflow


@pytest.fixture
def tcp_echo(serve):
    return serve("-q", "-4", "-t", "echo:0")


@pytest.fixture
def udp_echo(serve):
    # no per-source reply budget: the generator is one source sending fast
    return serve("-q", "-4", "-u", "--udp-rate", "0", "echo:0")


class PyServer:
    """A small TCP server in a thread: handler(conn) for each client; stops at close()."""

    def __init__(self, handler):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.handler = handler
        self.done = threading.Event()
        self.conns = []
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.done.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(0.5)
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c, self.done)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.done.set()
        self.t.join(timeout=5)
        self.ls.close()


def discard(c, done):
    while not done.is_set():
        try:
            if not c.recv(1 << 16):
                return
        except socket.timeout:
            continue


def corrupting_echo(c, done):
    """Echo, with one byte of every 1000 flipped."""
    seen = 0
    while not done.is_set():
        try:
            data = bytearray(c.recv(1 << 16))
        except socket.timeout:
            continue
        if not data:
            return
        for i in range(len(data)):
            if (seen + i) % 1000 == 999:
                data[i] ^= 0x20
        seen += len(data)
        c.sendall(bytes(data))


def slow_echo(c, done):
    """Echo of 64-byte requests, one at a time, each 20 ms after it was taken."""
    buf = b""
    while not done.is_set():
        try:
            data = c.recv(1 << 16)
        except socket.timeout:
            continue
        if not data:
            return
        buf += data
        while len(buf) >= 64:
            time.sleep(0.02)
            c.sendall(buf[:64])
            buf = buf[64:]


# ---- running the bench --------------------------------------------------------------------

def bench(*args, timeout=30):
    return run_sockflow(["bench", *map(str, args)], timeout=timeout, stdin=subprocess.DEVNULL)


def bench_json(*args, timeout=30):
    r = bench(*args, "--json", timeout=timeout)
    lines = [l for l in r.stdout.decode().splitlines() if l.startswith("{")]
    assert lines, (r.returncode, r.stdout, r.stderr)
    return r.returncode, json.loads(lines[-1]), r.stderr.decode()


def assert_sane(d, latency=True, timed=True):
    assert d["type"] == "result"
    assert d["requests"] > 0, d
    assert d["rps"] > 0, d
    assert d["mismatches"] == 0, d
    assert d["duration_s"] > (0.5 if timed else 0), d
    if latency:
        lat = d["latency_us"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
    else:
        assert d["latency_us"] is None
    assert d["rss_max_kb"] < 16 * 1024, d


def no_errors(d):
    e = d["errors"]
    return sum(e[k] for k in ("refused", "reset", "timeout", "closed", "no_port", "other")) == 0


# ---- the modes ------------------------------------------------------------------------------

def test_echo(tcp_echo):
    rc, d, _ = bench_json("echo", "127.0.0.1", tcp_echo.port(), "-c", "8", "-d", "1")
    assert_sane(d)
    assert rc == 0 and d["ok"] and no_errors(d)
    assert d["mode"] == "echo" and d["connections"] == 8 and d["size"] == 64
    assert d["bytes_out"] >= d["requests"] * 64 and d["bytes_in"] >= d["requests"] * 64
    assert d["connects"] == 8


def test_echo_pipelined_count_and_big_messages(tcp_echo):
    rc, d, _ = bench_json("echo", "127.0.0.1", tcp_echo.port(), "-c", "4", "-P", "8",
                          "--size", "16k", "-n", "2000", "-T", "2")
    assert_sane(d, timed=False)
    assert rc == 0 and d["reached"] and d["requests"] == 2000
    assert d["threads"] == 2 and d["pipeline"] == 8
    assert d["bytes_in"] == 2000 * 16384


def test_echo_pipelined_latency_is_each_requests_own():
    """4 requests in flight on one connection to a server that answers one every 20 ms:
    once the pipeline is full each request waits behind three others, so its latency is
    about 80 ms — not 20 (timed from the newest request) and not growing (from a stale
    one). The timestamps of the requests in flight are a ring indexed without division."""
    srv = PyServer(slow_echo)
    try:
        rc, d, _ = bench_json("echo", "127.0.0.1", srv.port, "-c", "1", "-P", "4",
                              "-d", "1.2", "--warmup", "0.3")
    finally:
        srv.close()
    assert_sane(d)
    assert rc == 0 and d["pipeline"] == 4
    lat = d["latency_us"]
    assert 70000 <= lat["p50"] <= 100000, lat
    assert lat["max"] < 200000, lat


def test_echo_warmup_is_left_out(tcp_echo):
    rc, d, _ = bench_json("echo", "127.0.0.1", tcp_echo.port(), "-c", "2", "-d", "1",
                          "--warmup", "0.5")
    assert_sane(d)
    assert rc == 0
    assert d["warmup_s"] == 0.5 and 0.9 < d["duration_s"] < 1.5


def test_connect(tcp_echo):
    rc, d, _ = bench_json("connect", "127.0.0.1", tcp_echo.port(), "-c", "4", "-d", "1")
    assert_sane(d)
    assert rc == 0 and no_errors(d)
    # on loopback the connections are spread over 127.0.0.2-127.0.0.9 unless told not to
    assert d["sources"] == ["127.0.0.%d" % i for i in range(2, 10)]
    assert d["connects"] >= d["requests"]


def test_connect_sources_given_or_none(tcp_echo):
    rc, d, _ = bench_json("connect", "127.0.0.1", tcp_echo.port(), "-c", "2", "-d", "1",
                          "--src", "none")
    assert_sane(d)
    assert rc == 0 and d["sources"] == []
    rc, d, _ = bench_json("connect", "127.0.0.1", tcp_echo.port(), "-c", "2", "-d", "1",
                          "--src", "127.0.0.3,127.0.0.4")
    assert rc == 0 and d["sources"] == ["127.0.0.3", "127.0.0.4"]


def test_connect_table_says_how(tcp_echo):
    r = bench("connect", "127.0.0.1", tcp_echo.port(), "-c", "2", "-d", "1")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "127.0.0.2 .. 127.0.0.9 (8 addresses" in out
    assert "the client closes first" in out
    assert "latency µs" in out and "p99.9" in out


def test_udp(udp_echo):
    rc, d, _ = bench_json("udp", "127.0.0.1", udp_echo.port("udp"), "-c", "8", "-d", "1")
    assert_sane(d)
    assert d["sent"] >= d["requests"] and d["lost"] <= d["sent"]
    assert rc == (0 if d["lost"] == 0 else 1)


def test_udp_too_small_is_a_usage_error(udp_echo):
    r = bench("udp", "127.0.0.1", udp_echo.port("udp"), "--size", "4", "-d", "1")
    assert r.returncode == 2 and b"8-byte" in r.stderr


def test_stream_to_discard(serve):
    srv = serve("-q", "-4", "-t", "discard:0")
    rc, d, _ = bench_json("stream", "127.0.0.1", srv.port(), "-d", "1", "--size", "64k")
    assert_sane(d, latency=False)
    assert rc == 0 and no_errors(d)
    assert d["bytes_out"] >= d["requests"] * 65536 and d["bits_per_sec"] > 0
    assert d["bytes_in"] == 0


def test_stream_from_chargen(serve):
    srv = serve("-q", "-4", "-t", "chargen:0")
    rc, d, _ = bench_json("stream", "127.0.0.1", srv.port(), "-d", "1", "--recv")
    assert_sane(d, latency=False)
    assert rc == 0 and no_errors(d)
    assert d["recv"] and d["bytes_in"] > 0 and d["bytes_out"] == 0


def test_stream_to_a_python_discard():
    srv = PyServer(discard)
    try:
        rc, d, _ = bench_json("stream", "127.0.0.1", srv.port, "-d", "1", "-c", "2")
    finally:
        srv.close()
    assert_sane(d, latency=False)
    assert rc == 0 and d["connects"] == 2


def stream_trace(serve, service, *args):
    srv = serve("-4", "-t", service + ":0")
    r = bench("stream", "127.0.0.1", srv.port(), "-T", "1", "-c", "1", "--size", "1k", *args,
              "--trace=json")
    assert r.returncode == 0, r.stderr
    return [json.loads(l) for l in r.stderr.decode().splitlines() if l.startswith("{")]


def test_stream_trace_shows_the_writes(serve):
    """--trace works in every mode: echo, connect and udp in test_trace.py, stream here."""
    evs = stream_trace(serve, "discard", "-n", "3")
    calls = [e["call"] for e in evs]
    assert calls[:2] == ["socket", "connect"] and calls[-1] == "close", calls
    writes = [e for e in evs if e["call"] == "write"]
    assert len(writes) >= 3 and all(e["result"] == 1024 for e in writes[:3]), writes
    assert {e["side"] for e in evs} == {"client"} and {e["id"] for e in evs} == {1}


def test_stream_recv_trace_shows_the_reads(serve):
    evs = stream_trace(serve, "chargen", "-n", "2", "--recv")
    calls = [e["call"] for e in evs]
    assert calls[:2] == ["socket", "connect"] and calls[-1] == "close", calls
    assert "write" not in calls
    assert sum(e["result"] for e in evs if e["call"] == "read") >= 2048


# ---- output ---------------------------------------------------------------------------------

def test_json_stream_has_intervals(tcp_echo):
    r = bench("echo", "127.0.0.1", tcp_echo.port(), "-c", "2", "-d", "2", "-i", "0.5",
              "--warmup", "0.5", "--json-stream")
    objs = [json.loads(l) for l in r.stdout.decode().splitlines()]
    assert r.returncode == 0, r.stderr
    ivs = [o for o in objs if o["type"] == "interval"]
    assert objs[-1]["type"] == "result" and len(objs) - 1 == len(ivs)
    assert 4 <= len(ivs) <= 6, ivs
    assert [o["index"] for o in ivs] == list(range(1, len(ivs) + 1))
    assert ivs[0]["warmup"] and not ivs[-1]["warmup"]
    assert all(o["requests"] > 0 for o in ivs)
    # the intervals after the warm-up add up to the result
    assert sum(o["requests"] for o in ivs if not o["warmup"]) == objs[-1]["requests"]


def test_live_lines_on_request(tcp_echo):
    r = bench("echo", "127.0.0.1", tcp_echo.port(), "-c", "2", "-d", "1.2", "-i", "0.4")
    assert r.returncode == 0
    lines = [l for l in r.stderr.decode().splitlines() if "req/s" in l]
    assert len(lines) >= 3, r.stderr
    assert "requests" in r.stdout.decode()


def test_usage_errors():
    for args in (["nosuch", "127.0.0.1", "7"], ["echo", "127.0.0.1"], ["echo", "127.0.0.1", "7",
                 "-c", "0"], ["udp", "127.0.0.1", "7", "--recv"], ["connect", "127.0.0.1", "7",
                 "--src", "127.0.0.9-127.0.0.2"]):
        r = bench(*args)
        assert r.returncode == 2, (args, r.stderr)
    r = bench("--help")
    assert r.returncode == 0 and b"echo" in r.stdout and b"--json" in r.stdout


def test_src_ranges_that_add_up_past_the_limit_are_refused():
    """Two ranges of 200 addresses each: more sources than there is room for. Refused with
    a usage error before anything is written past the table (it once overflowed it)."""
    port = free_port()
    for src in ("127.0.0.1-127.0.0.200,127.0.1.1-127.0.1.200",
                "127.0.1.1-127.0.1.200,127.0.0.1,127.0.0.2-127.0.0.80"):
        r = bench("echo", "127.0.0.1", port, "-d", "1", "--src", src)
        assert_no_sanitizer_report(r.stderr, "sockflow bench --src")
        assert r.returncode == 2, r
        assert b"--src: at most 256 addresses" in r.stderr, r.stderr
    # up to the limit is fine: 200 + 56 = 256 sources, all in the result
    srv = PyServer(discard)
    try:
        rc, d, _ = bench_json("stream", "127.0.0.1", srv.port, "-d", "0.3", "-c", "1",
                              "--src", "127.0.0.1-127.0.0.200,127.0.1.1-127.0.1.56")
    finally:
        srv.close()
    assert len(d["sources"]) == 256 and d["sources"][-1] == "127.0.1.56", d["sources"][-3:]


def nofile(soft, hard):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_conns_past_the_descriptor_limit_are_refused(tcp_echo):
    """-c 1000000 under a hard limit of 256 descriptors: refused at once (it ran past its
    deadline counting millions of EMFILE)."""
    t0 = time.monotonic()
    r = subprocess.run([SOCKFLOW, "bench", "echo", "127.0.0.1", str(tcp_echo.port()),
                        "-c", "1000000", "-d", "1"], capture_output=True, timeout=30,
                       preexec_fn=nofile(256, 256))
    assert r.returncode == 2, r
    assert b"-c 1000000: needs 1000024 descriptors, and the limit is 256" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 1


def test_conns_past_the_soft_limit_raise_it(tcp_echo):
    """The soft limit is raised as far as the run needs when the hard limit allows."""
    r = subprocess.run([SOCKFLOW, "bench", "echo", "127.0.0.1", str(tcp_echo.port()),
                        "-c", "300", "-T", "1", "-d", "1", "--json"], capture_output=True,
                       timeout=30, preexec_fn=nofile(256, 4096))
    d = json.loads(r.stdout.decode().splitlines()[-1])
    assert r.returncode == 0 and d["connects"] == 300 and no_errors(d), (r.stderr, d)


# ---- one meaning per flag; what is said when ---------------------------------------------------

def test_s_is_the_source_and_size_is_spelled_out(tcp_echo):
    """-s is the source address in every subcommand; the size is --size, and the old
    spelling is refused with the new one named."""
    port = tcp_echo.port()
    r = bench("echo", "127.0.0.1", port, "-s", "16", "-d", "1")
    assert r.returncode == 2 and b"--size 16" in r.stderr, r.stderr
    r = bench("echo", "127.0.0.1", port, "-s", "64k", "-d", "1")
    assert r.returncode == 2 and b"--size 64k" in r.stderr, r.stderr
    r = bench("echo", "127.0.0.1", port, "-s", "127.0.0.2,127.0.0.3", "-d", "1")
    assert r.returncode == 2 and b"--src" in r.stderr, r.stderr
    rc, d, _ = bench_json("connect", "127.0.0.1", port, "-s", "127.0.0.5", "-c", "2", "-d", "0.5")
    assert rc == 0 and d["sources"] == ["127.0.0.5"], d
    rc, d, _ = bench_json("echo", "127.0.0.1", port, "--size", "100", "-c", "1", "-d", "0.5")
    assert rc == 0 and d["size"] == 100 and d["bytes_in"] == d["requests"] * 100


def test_t_is_tcp_and_the_timeout_is_w(tcp_echo):
    r = bench("echo", "127.0.0.1", tcp_echo.port(), "-t", "0.5", "-d", "1")
    assert r.returncode == 2 and b"-w SECS" in r.stderr, r.stderr
    for flag in ("-w", "--timeout"):
        rc, d, _ = bench_json("echo", "127.0.0.1", tcp_echo.port(), flag, "0.7", "-c", "1",
                              "-d", "0.5")
        assert rc == 0 and d["timeout_s"] == 0.7, d


def test_udp_against_a_rate_limited_server_says_so(serve):
    """A default serve answers one source about 1,000 times a second: the loss is the
    server's budget, and the report says so (it only said "loss", and exited 1)."""
    srv = serve("-4", "-u", "echo:0")
    r = bench("udp", "127.0.0.1", srv.port("udp"), "-d", "2")
    out = r.stdout.decode()
    assert r.returncode == 1, out
    assert "may be rate limiting" in out and "--udp-rate 0" in out, out
    rc, d, err = bench_json("udp", "127.0.0.1", srv.port("udp"), "-d", "1.5")
    assert rc == 1 and d["lost"] > 0 and d["rate_limit_suspected"], d
    assert "--udp-rate 0" in err


def test_udp_with_no_loss_suspects_nothing(udp_echo):
    r = bench("udp", "127.0.0.1", udp_echo.port("udp"), "-c", "4", "-d", "1")
    if r.returncode == 0:       # a loaded machine may lose a datagram; then nothing to check
        assert "rate limiting" not in r.stdout.decode()


def test_output_that_cannot_be_written_fails(tcp_echo):
    """The figures are the product: a full disk or a closed pipe is exit 1, not 0."""
    port = str(tcp_echo.port())
    with open("/dev/full", "wb") as full:
        for args in (["echo", "127.0.0.1", port, "-c", "1", "-d", "0.3"],
                     ["echo", "127.0.0.1", port, "-c", "1", "-d", "0.3", "--json"],
                     ["--help"]):
            r = subprocess.run([SOCKFLOW, "bench", *args], stdout=full, stderr=subprocess.PIPE,
                               timeout=30)
            assert r.returncode == 1 and b"standard output" in r.stderr, (args, r.stderr)
    # --json-stream into a pipe closed after the first line: the run ends there
    p = subprocess.Popen([SOCKFLOW, "bench", "echo", "127.0.0.1", port, "-c", "1", "-d", "20",
                          "-i", "0.2", "--json-stream"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    t0 = time.monotonic()
    assert p.stdout.readline().startswith(b"{")
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=10)
    assert p.returncode == 1 and b"standard output" in err, err
    assert time.monotonic() - t0 < 5


# ---- a local server keeps its CPUs ------------------------------------------------------------

def test_a_local_target_gets_half_the_cpus(tcp_echo):
    """The generator on the server's host leaves the server half the CPUs by default (one
    thread per CPU took the server's core: 0.67-0.90x the figures), and says so."""
    cpus = len(os.sched_getaffinity(0))
    rc, d, _ = bench_json("echo", "127.0.0.1", tcp_echo.port(), "-c", "8", "-d", "0.5")
    assert rc == 0 and d["local_target"], d
    assert d["threads"] == max(1, cpus // 2) and d["threads_halved"] == (cpus > 1), d
    r = bench("echo", "127.0.0.1", tcp_echo.port(), "-c", "8", "-d", "0.5")
    if cpus > 1:
        assert b"the target is on this host: half the CPUs" in r.stdout, r.stdout
    # -T is obeyed as given
    rc, d, _ = bench_json("echo", "127.0.0.1", tcp_echo.port(), "-c", "8", "-d", "0.5", "-T", "2")
    assert d["threads"] == 2 and not d["threads_halved"], d


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private network namespace")
def test_an_interface_address_is_local_and_a_neighbour_is_not():
    """Not only loopback: an address of one of this host's interfaces is local too. In a
    private namespace: 10.9.0.1 is ours, 10.9.0.2 (same subnet) is not."""
    script = ("ip link set lo up && ip addr add 10.9.0.1/24 dev lo && "
              "for a in 10.9.0.1 10.9.0.2; do %s bench echo $a 9 -c 4 -d 0.3 -w 0.2 --json "
              "| tail -1; done" % SOCKFLOW)
    r = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.startswith("{")]
    assert len(lines) == 2, (r.stdout, r.stderr)
    assert lines[0]["local_target"] and not lines[1]["local_target"], lines


# ---- failures are counted, never fatal, always bounded -----------------------------------------

def test_refused_is_counted():
    port = free_port()
    t0 = time.monotonic()
    rc, d, _ = bench_json("echo", "127.0.0.1", str(port), "-c", "2", "-d", "1")
    assert rc == 1 and not d["ok"]
    assert d["requests"] == 0 and d["errors"]["refused"] > 0
    assert time.monotonic() - t0 < 5


def test_mismatch_is_detected():
    srv = PyServer(corrupting_echo)
    try:
        rc, d, _ = bench_json("echo", "127.0.0.1", str(srv.port), "-c", "2", "-d", "1")
    finally:
        srv.close()
    assert rc == 1 and d["requests"] > 0
    # one byte of every 1000 flipped: one request of 64 bytes in every ~15.6
    assert d["mismatches"] > 0
    assert abs(d["mismatches"] - d["bytes_in"] / 1000) <= d["bytes_in"] / 1000 * 0.2 + 3, d


def test_stopped_server_times_out_at_the_deadline(tcp_echo):
    """RELIABILITY: load generator against a stopped server — memory bounded, timeouts
    reported, non-zero exit at the deadline."""
    p = subprocess.Popen([SOCKFLOW, "bench", "echo", "127.0.0.1", str(tcp_echo.port()), "-c", "20",
                          "-P", "4", "--size", "4k", "-d", "3", "-w", "0.5", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    time.sleep(0.8)
    os.kill(tcp_echo.pid, signal.SIGSTOP)
    try:
        out, err = p.communicate(timeout=15)
        assert_no_sanitizer_report(err, "sockflow bench")
    finally:
        os.kill(tcp_echo.pid, signal.SIGCONT)
    took = time.monotonic() - t0
    d = json.loads(out.decode().splitlines()[-1])
    assert p.returncode == 1, err
    assert 2.5 < took < 10, took      # the 3 s deadline, with room for a loaded machine
    assert d["requests"] > 0 and d["errors"]["timeout"] > 0
    assert d["rss_max_kb"] < 16 * 1024, d     # a few MiB; no growth while stalled


def test_server_stopped_from_the_start(tcp_echo):
    os.kill(tcp_echo.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        rc, d, _ = bench_json("connect", "127.0.0.1", tcp_echo.port(), "-c", "4", "-d", "1.5",
                              "-w", "0.3")
        took = time.monotonic() - t0
    finally:
        os.kill(tcp_echo.pid, signal.SIGCONT)
    assert rc == 1 and d["requests"] == 0 and d["errors"]["timeout"] > 0
    assert took < 5


def test_udp_server_stopped_counts_lost(udp_echo):
    os.kill(udp_echo.pid, signal.SIGSTOP)
    try:
        rc, d, _ = bench_json("udp", "127.0.0.1", udp_echo.port("udp"), "-c", "4", "-d", "1",
                              "-w", "0.1")
    finally:
        os.kill(udp_echo.pid, signal.SIGCONT)
    assert rc == 1 and d["requests"] == 0 and d["lost"] > 0
    assert not d["rate_limit_suspected"]       # nothing came back: not a rate limit


def test_interrupt_prints_what_was_measured(tcp_echo):
    p = subprocess.Popen([SOCKFLOW, "bench", "echo", "127.0.0.1", str(tcp_echo.port()), "-c", "2",
                          "-d", "30", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert_no_sanitizer_report(err, "sockflow bench")
    assert time.monotonic() - t0 < 3
    d = json.loads(out.decode().splitlines()[-1])
    assert d["interrupted"] and d["requests"] > 0 and d["duration_s"] < 5
