"""test_compare.py - checks of the measuring apparatus: the peers (bench/peers/smoke.sh),
the sockflow command lines bench/compare.py builds, the server CPU read from /proc, and
the per-round ratios. Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider bench/test_compare.py
(after `make` and `make -C bench/peers`)."""
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402


def test_peers_smoke():
    """Every peer echoes and stops on SIGTERM; the epoll reference returns every byte of a
    backed-up connection before its FIN; the recvmmsg one returns batches whole."""
    r = subprocess.run(["bash", os.path.join(HERE, "peers", "smoke.sh")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   epoll_echo: 16000000 bytes then FIN: all back, then end of stream" in r.stdout
    assert "ok   mmsg_echo: 4 × 50 datagrams at once" in r.stdout


@pytest.fixture
def server(request):
    s = request.param
    yield s.start()
    s.stop()


def sockflow_tcp():
    return compare.Server("sockflow", "tcp", compare.sockflow_serve("tcp"))


def test_spread_and_format():
    assert compare.spread([3, 1, 2, None]) == (2, 1, 3)
    assert compare.spread([None]) is None
    assert compare.fmt_spread((1.0, 0.9, 1.2)) == "1.00 (0.90–1.20)"
    assert compare.fmt_spread((1.0, 1.0, 1.0)) == "1.00"


def test_ratios_are_per_round():
    """The ratio is the median of the ratios of each round, not the ratio of the medians:
    here the medians are level (1.0) but every round has the server 2x behind or ahead."""
    s = compare.Server("x", "tcp", ["true"], key="x")
    base = {0: {"rps": 100, "cpu_us": 1.0}, 1: {"rps": 200, "cpu_us": 1.0},
            2: {"rps": 400, "cpu_us": 1.0}}
    runs = {0: {"rps": 200, "cpu_us": 2.0}, 1: {"rps": 400, "cpu_us": 2.0},
            2: {"rps": 100, "cpu_us": 0.5}}
    r = compare.row("t", s, runs, base)
    assert r["rate"][0] == 200 and r["ratio"] == (2.0, 0.25, 2.0)
    assert r["cpu_ratio"] == (2.0, 0.5, 2.0)


def run_until_done(code, forks):
    """Starts python code that spins for a known CPU time and then prints done and sleeps;
    returns the Server once it has said done."""
    s = compare.Server("spin", "tcp", [sys.executable, "-c", code], banner=False, forks=forks)
    s.p = subprocess.Popen(s.argv, stdout=subprocess.PIPE)
    line = s.p.stdout.readline()        # the code's own deadline bounds this
    assert line == b"done\n"
    return s


SPIN = ("import time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < %g and time.monotonic() < %r: pass\n")


def test_server_cpu_counts_a_busy_process():
    s = run_until_done(SPIN % (0.5, time.monotonic() + 20) +
                       "print('done', flush=True)\ntime.sleep(10)", False)
    try:
        used = compare.server_cpu(s)
    finally:
        s.p.kill()
        s.p.wait()
    assert 0.45 < used < 0.8


def test_server_cpu_adds_reaped_children_of_a_fork_server():
    code = ("import os, time\n"
            "for _ in range(3):\n"
            "    if os.fork() == 0:\n" +
            "".join("        " + l + "\n" for l in
                    (SPIN % (0.2, time.monotonic() + 20)).splitlines()) +
            "        os._exit(0)\n"
            "    os.wait()\n"
            "print('done', flush=True)\n"
            "time.sleep(10)")
    s = run_until_done(code, True)
    try:
        as_fork = compare.server_cpu(s)
        s.forks = False
        alone = compare.server_cpu(s)
    finally:
        s.p.kill()
        s.p.wait()
    assert 0.55 < as_fork - alone < 0.9


@pytest.mark.parametrize("server", [sockflow_tcp()], indirect=True)
def test_sockflow_bench_command_line_and_window(server):
    """The command lines of compare.py are accepted by this sockflow, and the run gives
    requests and the server's CPU per request over the measured window."""
    r = compare.bench("echo", server.port, (4, 64, 2), 0.5, 0.3, 1, server=server)
    assert r is not None and r["rps"] > 0 and r["requests"] > 0
    assert r["size"] == 64 and r["pipeline"] == 2 and r["threads"] == 1
    assert 0 < r["cpu_us"] < 1000 and 0 < r["server_busy"] <= 1.05


@pytest.mark.parametrize("server", [sockflow_tcp()], indirect=True)
def test_epoll_gen_window(server):
    r = compare.epoll_gen("echo", server.port, (4, 64, 1), 0.5, 0.3, server=server)
    assert r is not None and r["rps"] > 0
    assert 0 < r["cpu_us"] < 1000


def test_sockflow_udp_serve_command_line():
    s = compare.Server("sockflow", "udp", compare.sockflow_serve("udp")).start()
    try:
        r = compare.bench("udp", s.port, (8, 64, 1), 0.5, 0.2, 1, server=s)
    finally:
        s.stop()
    assert r is not None and r["rps"] > 1000    # no per-source limit of 1000/s


def cpus_allowed(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to pin")
def test_servers_and_their_children_run_on_the_upper_half_of_the_cpus():
    """A started server, and a process it forks after, may run only on the CPUs kept for
    the servers; this script (the generators' side) keeps all of its own."""
    ours = sorted(os.sched_getaffinity(0))
    want, gen = compare.split_cpus(True)
    assert want == set(ours[len(ours) // 2:]) and gen == set(ours[:len(ours) // 2])
    assert compare.split_cpus(False) == (None, None)
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    time.sleep(10)\n"
            "    os._exit(0)\n"
            "print('done', flush=True)\n"
            "time.sleep(10)")
    compare.SERVER_CPUS = want
    try:
        s = compare.Server("spin", "tcp", [sys.executable, "-c", code], banner=False)
        s.p = subprocess.Popen(s.argv, stdout=subprocess.PIPE, start_new_session=True,
                               preexec_fn=compare.server_preexec)
        try:
            assert s.p.stdout.readline() == b"done\n"
            tree = compare.proc_tree(s.p.pid)
            assert len(tree) == 2
            for pid in tree:
                assert {int(c) for c in cpus_allowed(pid).replace("-", ",").split(",")} <= want
        finally:
            compare.stop(s.p)
    finally:
        compare.SERVER_CPUS = None
    assert sorted(os.sched_getaffinity(0)) == ours


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to pin")
def test_load_generators_run_on_the_lower_half_and_the_checked_one_anywhere():
    """pump() starts a load row's generator on the generators' CPUs, and the generator
    check's (pin=False) on every CPU this script has."""
    ours = set(os.sched_getaffinity(0))
    compare.SERVER_CPUS, compare.GEN_CPUS = compare.split_cpus(True)
    seen = []
    argv = ["grep", "Cpus_allowed_list", "/proc/self/status"]
    try:
        compare.pump(argv, 10, seen.append)
        compare.pump(argv, 10, seen.append, pin=False)
    finally:
        compare.SERVER_CPUS = compare.GEN_CPUS = None
    got = [{int(c) for c in line.split(":")[1].strip().replace("-", ",").split(",")}
           for line in seen]
    assert got[0] <= compare.split_cpus(True)[1] and got[0] != ours
    assert got[1] == {min(ours), max(ours)} or got[1] == ours


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to pin")
def test_settle_waits_while_the_server_cpus_are_busy():
    """settle() returns only once the servers' CPUs have gone quiet: a process spinning
    there for 0.6 s holds it that long; it never waits past its limit."""
    compare.SERVER_CPUS, compare.GEN_CPUS = compare.split_cpus(True)
    try:
        spin = subprocess.Popen([sys.executable, "-c", SPIN % (0.6, time.monotonic() + 5)],
                                preexec_fn=compare.server_preexec)
        time.sleep(0.15)
        t0 = time.monotonic()
        compare.settle(limit=3.0)
        waited = time.monotonic() - t0
        spin.wait(timeout=10)
        t0 = time.monotonic()
        compare.settle(limit=0.5)
        bounded = time.monotonic() - t0
    finally:
        compare.SERVER_CPUS = compare.GEN_CPUS = None
    assert waited >= 0.3
    assert bounded < 1.0
