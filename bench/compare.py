#!/usr/bin/python3
"""compare: sockflow against the servers people pick instead, on loopback, driven by
`sockflow bench` with the same settings for all, runs alternated so that drift on a
noisy machine hits every server alike; the server's CPU time read from /proc over each
measured window. Writes bench/RESULTS.md (--quick: a one-minute subset, printed only).

Run through bench/compare (make bench, make bench-quick), which builds the peers first.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
PBIN = os.path.join(PEERS, "bin")
SOCKFLOW = os.environ.get("SOCKFLOW", os.path.join(ROOT, "build", "rel", "sockflow"))
NOFILE = 20000          # for the idle-connection test, both sides
CLK_TCK = os.sysconf("SC_CLK_TCK")
SYSCALLS = False        # --syscalls: count the server's system calls with perf stat
SERVER_CPUS = None      # the CPUs every server (with its threads and children) may run on
GEN_CPUS = None         # and the generators of the load rows (the generator check's are free)

running = []            # every process started here, stopped by its process group


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- the sockflow command lines: each is built here and nowhere else --------------------

def sockflow_serve(proto, service="echo", extra=()):
    """`sockflow serve` with one service on a port of 127.0.0.1 the kernel picks, logging
    only errors; UDP without its per-source reply limit (by default 1000/s)."""
    argv = [SOCKFLOW, "serve", "--quiet", "--tcp" if proto == "tcp" else "--udp", "-4"]
    if proto == "udp":
        argv += ["--udp-rate", "0"]
    return argv + list(extra) + [service + ":0"]


def sockflow_bench(mode, port, load, secs, warmup, threads, extra=()):
    """`sockflow bench` against 127.0.0.1:port. load: (connections, bytes, in flight);
    threads None leaves its default. One JSON object per interval, the interval as long
    as the warm-up so that the warm-up's end is a line, then the result."""
    conns, size, pipeline = load
    argv = [SOCKFLOW, "bench", mode, "127.0.0.1", str(port), "--conns", str(conns),
            "--size", str(size), "--duration", "%g" % secs, "--warmup", "%g" % warmup,
            "--interval", "%g" % (warmup if warmup > 0 else secs), "--json-stream"]
    if pipeline > 1:
        argv += ["--pipeline", str(pipeline)]
    if threads:
        argv += ["--threads", str(threads)]
    return argv + list(extra)


# ---- processes ----------------------------------------------------------------------

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(NOFILE, hard) if hard != resource.RLIM_INFINITY else NOFILE
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def split_cpus(pin):
    """(the servers' CPUs, the generators' CPUs): the upper and the lower half of the CPUs
    this script may use, or (None, None). On a 2-CPU machine the server has CPU 1 and the
    generator CPU 0. Unpinned, the scheduler now and then puts the two on one CPU for a
    whole run (a loopback wake-up asks for the waker's CPU) and the rate halves: a lottery
    that hit whichever server it hit."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return set(cpus[len(cpus) // 2:]), set(cpus[:len(cpus) // 2])


def server_preexec():
    """In each server's process before it runs: the descriptor limit, the server's CPUs."""
    raise_nofile()
    if SERVER_CPUS:
        os.sched_setaffinity(0, SERVER_CPUS)


def gen_preexec():
    """In a generator of the load rows before it runs: the generators' CPUs."""
    if GEN_CPUS:
        os.sched_setaffinity(0, GEN_CPUS)


def cpu_ticks(cpus):
    """(busy, total) jiffies of these CPUs (None: all) from /proc/stat."""
    busy = total = 0
    with open("/proc/stat") as f:
        for line in f:
            if not (line.startswith("cpu") and line[3].isdigit()):
                continue
            v = line.split()
            if cpus is not None and int(v[0][3:]) not in cpus:
                continue
            t = [int(x) for x in v[1:9]]
            busy += sum(t) - t[3] - t[4]
            total += sum(t)
    return busy, total


SETTLED = {"waits": 0, "secs": 0.0}


def settle(limit=3.0, quiet=0.2):
    """Wait until the servers' CPUs are quiet (under 20 % busy over 0.1 s), at most limit
    seconds. A fork-per-connection server's children go on exiting after its run — 0.5 s
    of a full CPU after 500 connections — and whoever ran next paid for it: with the
    order turning, the same server each round."""
    t0 = time.monotonic()
    a = cpu_ticks(SERVER_CPUS)
    while time.monotonic() - t0 < limit:
        time.sleep(0.1)
        b = cpu_ticks(SERVER_CPUS)
        if b[1] > a[1] and (b[0] - a[0]) / (b[1] - a[1]) < quiet:
            break
        a = b
    took = time.monotonic() - t0
    if took > 0.15:
        SETTLED["waits"] += 1
        SETTLED["secs"] += took


def stop(p):
    """SIGTERM to the server's own process group (the server and the children it forked),
    SIGKILL to what is left after 5 s."""
    if p is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if p in running:
        running.remove(p)


def stop_all():
    for p in list(running):
        stop(p)


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_tcp(port, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    def __init__(self, name, proto, argv, banner=True, forks=False, key=None, many=True):
        self.name, self.proto, self.argv, self.banner = name, proto, argv, banner
        self.forks = forks      # a process per connection
        self.key = key or name  # the name --servers takes
        self.many = many        # held at the largest idle count (one process, no thread each)
        self.p = None
        self.port = None

    def available(self):
        exe = self.argv[0]
        return os.path.exists(exe) if os.path.isabs(exe) else _which(exe) is not None

    def start(self):
        argv = list(self.argv)
        if not self.banner:
            self.port = free_port()
            argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=server_preexec, cwd=PEERS)
        running.append(self.p)
        if not self.banner:
            if not wait_tcp(self.port):
                self.stop()
                raise RuntimeError("%s: not listening on %d" % (self.name, self.port))
            return self
        end = time.monotonic() + 10
        line = b""
        while time.monotonic() < end and not line.endswith(b"\n"):
            r, _, _ = select.select([self.p.stdout], [], [], 0.2)
            if r:
                c = os.read(self.p.stdout.fileno(), 1)
                if not c:
                    break
                line += c
        m = re.search(rb"listening on (tcp|udp) 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("%s: no 'listening on' line (%r)" % (self.name, line))
        self.port = int(m.group(2))
        return self

    def stop(self):
        stop(self.p)
        self.p = None


def _which(exe):
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        f = os.path.join(d, exe)
        if os.access(f, os.X_OK):
            return f
    return None


def sockflow_services():
    try:
        out = subprocess.run([SOCKFLOW, "serve", "--help"], capture_output=True, text=True,
                             timeout=10).stdout
    except OSError:
        return set()
    return set(re.findall(r"^  ([a-z]+) +RFC", out, re.M))


REFERENCE = {"tcp": "epoll", "udp": "recvmmsg"}     # the key of each protocol's reference


def tcp_servers(keys=None):
    all_ = [
        Server("sockflow", "tcp", sockflow_serve("tcp")),
        Server("epoll reference", "tcp", [os.path.join(PBIN, "epoll_echo"), "0"], key="epoll"),
        Server("libuv", "tcp", [os.path.join(PBIN, "uv_echo"), "0"]),
        Server("libevent", "tcp", [os.path.join(PBIN, "ev_echo"), "0"]),
        Server("node net", "tcp", ["node", "node_echo.js", "0"], key="node"),
        Server("socat fork", "tcp", ["socat", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,"
                                     "fork,backlog=1024", "PIPE"], banner=False, forks=True,
               key="socat", many=False),
        Server("UNP thread", "tcp", [os.path.join(PBIN, "unp_thread_echo"), "0"],
               key="unp-thread", many=False),
        Server("UNP fork", "tcp", [os.path.join(PBIN, "unp_fork_echo"), "0"], forks=True,
               key="unp-fork", many=False),
    ]
    return [s for s in all_ if keys is None or s.key in keys]


def udp_servers(keys=None):
    all_ = [
        Server("sockflow", "udp", sockflow_serve("udp")),
        # the same, each reply a message of its own: what grouping them gains
        Server("sockflow --no-udp-gso", "udp", sockflow_serve("udp", extra=["--no-udp-gso"]),
               key="sockflow-nogso"),
        Server("recvmmsg reference", "udp", [os.path.join(PBIN, "mmsg_echo"), "0"],
               key="recvmmsg"),
        Server("recvfrom loop", "udp", [os.path.join(PBIN, "udp_echo"), "0"], key="recvfrom"),
        Server("node dgram", "udp", ["node", "node_udp_echo.js", "0"], key="node"),
    ]
    return [s for s in all_ if keys is None or s.key in keys]


# ---- running a generator, and the server's CPU time over its measured window ---------------

def child_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def server_cpu(server, kernel=False):
    """CPU seconds the server has used, utime + stime from /proc/PID/stat (all its threads);
    for a fork server also those of its live children and, as cutime + cstime, of the
    children it has reaped. kernel: (that, the stime part alone)."""
    pids = proc_tree(server.p.pid) if server.forks else [server.p.pid]
    ticks = sys_ticks = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()        # f[0] is field 3, the state
        ticks += int(f[11]) + int(f[12])
        sys_ticks += int(f[12])
        if server.forks and pid == server.p.pid:
            ticks += int(f[13]) + int(f[14])
            sys_ticks += int(f[14])
    return (ticks / CLK_TCK, sys_ticks / CLK_TCK) if kernel else ticks / CLK_TCK


class Window:
    """The server's CPU time and the clock at the start and the end of the measured
    window, read when the generator's output says it begins and ends."""

    def __init__(self, server):
        self.server = server
        self.begin = self.end = None
        if server is not None:
            self.start()

    def _now(self):
        return server_cpu(self.server, kernel=True) + (time.monotonic(),)

    def start(self):
        if self.server is not None:
            self.begin, self.end = self._now(), None

    def stop(self):
        if self.server is not None:
            self.end = self._now()

    def fill(self, r, requests):
        """Adds the server's CPU figures to the result r, per one of the requests."""
        if self.begin is None or self.end is None or requests <= 0:
            return r
        cpu, wall = self.end[0] - self.begin[0], self.end[2] - self.begin[2]
        r["server_cpu_s"] = cpu
        r["server_busy"] = cpu / wall if wall > 0 else 0.0
        if cpu > 0:
            r["server_kernel"] = (self.end[1] - self.begin[1]) / cpu
        r["cpu_us"] = cpu * 1e6 / requests
        return r


class Syscalls:
    """The server's system calls, counted by `perf stat -e raw_syscalls:sys_enter -p PID`
    from before the generator starts (perf takes a moment to attach) to its result."""

    def __init__(self, server):
        self.p, self.count = None, None
        if not SYSCALLS or server is None or _which("perf") is None:
            return
        self.p = subprocess.Popen(["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x,",
                                   "-p", str(server.p.pid)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        running.append(self.p)
        time.sleep(0.3)

    def stop(self):
        if self.p is None or self.count is not None:
            return
        try:
            os.kill(self.p.pid, signal.SIGINT)
            _, err = self.p.communicate(timeout=5)
            m = re.match(r"(\d+),", err.decode(errors="replace").strip().splitlines()[-1])
            self.count = int(m.group(1)) if m else None
        except (subprocess.TimeoutExpired, IndexError, OSError):
            pass
        stop(self.p)


def pump(argv, timeout, on_line, pin=True):
    """Runs argv and hands each line of its standard output to on_line as it comes; the
    run is stopped at the deadline. Returns (exit status or None, standard error). pin:
    on the generators' CPUs."""
    err = tempfile.TemporaryFile()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                         start_new_session=True, preexec_fn=gen_preexec if pin else None)
    running.append(p)
    end, buf, fd = time.monotonic() + timeout, b"", p.stdout.fileno()
    status = None
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], min(1.0, max(0.0, end - time.monotonic())))
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                on_line(line.decode(errors="replace"))
        try:
            status = p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            log("%s: stopped at its deadline" % os.path.basename(argv[0]))
    finally:
        stop(p)
        p.stdout.close()
        err.seek(0)
        text = err.read().decode(errors="replace").strip()
        err.close()
    return status, text


def bench(mode, port, load, secs, warmup, threads, server=None, extra=(), pin=True):
    """One `sockflow bench` run: its JSON result, with the server's CPU over the measured
    intervals when server is given (the window runs from the end of the last warm-up
    interval to the end of the last measured one, and the requests are theirs). pin: on
    the generators' CPUs (the generator check leaves it free: its threads are the test)."""
    win, res, seen = Window(server), {}, {"requests": 0, "n": 0, "all": 0}
    calls = Syscalls(server)

    def on_line(line):
        if not line.startswith("{"):
            return
        d = json.loads(line)
        if d.get("type") == "interval":
            seen["all"] += d.get("requests", 0)
            if d.get("warmup"):
                win.start()
            else:
                win.stop()
                seen["requests"] += d.get("requests", 0)
                seen["n"] += 1
        else:
            calls.stop()
            res.update(d)
            if not seen["n"]:
                win.stop()

    cpu0, t0 = child_cpu(), time.monotonic()
    _, err = pump(sockflow_bench(mode, port, load, secs, warmup, threads, extra),
                  secs + warmup + 60, on_line, pin)
    if "rps" not in res:
        log("sockflow bench gave no result: %s" % err)
        return None
    res["cpu_busy"] = (child_cpu() - cpu0) / max(time.monotonic() - t0, 1e-3)
    calls.stop()
    if calls.count is not None and seen["all"]:
        res["syscalls"] = calls.count / seen["all"]     # per request, warm-up included
    return win.fill(res, seen["requests"] if seen["n"] else res.get("requests", 0))


def epoll_gen(mode, port, load, secs, warmup, server=None, pin=True):
    """One run of bench/peers/epoll_gen, the neutral generator: {"rps", "requests",
    "cpu_busy"}, with the server's CPU over its measured window when server is given."""
    conns, size, pipeline = load
    argv = [os.path.join(PBIN, "epoll_gen"), mode, "127.0.0.1", str(port), "-c", str(conns),
            "-s", str(size), "-d", "%g" % secs, "-w", "%g" % warmup]
    if mode == "echo":
        argv += ["-P", str(pipeline)]
    win, res = Window(server), {}

    def on_line(line):
        if line == "measuring":
            win.start()
        m = re.match(r"requests=(\d+) seconds=([\d.]+) rps=(\d+)", line)
        if m:
            win.stop()
            res.update(requests=int(m.group(1)), rps=int(m.group(3)))

    cpu0, t0 = child_cpu(), time.monotonic()
    _, err = pump(argv, secs + warmup + 60, on_line, pin)
    if not res:
        log("epoll_gen gave no result: %s" % err)
        return None
    res["cpu_busy"] = (child_cpu() - cpu0) / max(time.monotonic() - t0, 1e-3)
    return win.fill(res, res["requests"])


def median_run(runs):
    """The run with the median rate (lower middle for an even count)."""
    runs = sorted([r for r in runs if r], key=lambda r: r["rps"])
    return runs[(len(runs) - 1) // 2] if runs else None


def error_note(r):
    e = r["errors"]
    parts = ["%s %d" % (k, e[k]) for k in ("refused", "reset", "timeout", "closed", "no_port",
                                           "other") if e.get(k)]
    if r.get("mismatches"):
        parts.append("mismatches %d" % r["mismatches"])
    if r.get("lost"):
        parts.append("lost %d" % r["lost"])
    return ", ".join(parts)


# ---- the sections -------------------------------------------------------------------

def spread(xs):
    """(median, min, max) of xs, or None when there is nothing."""
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), min(xs), max(xs)) if xs else None


# (label, mode, (connections, bytes, in flight), a main row: in --quick and the summary)
TCP_TESTS = [
    ("echo, 1 conn, 64 B", "echo", (1, 64, 1), False),
    ("echo, 50 conns, 64 B", "echo", (50, 64, 1), True),
    ("echo, 500 conns, 64 B", "echo", (500, 64, 1), True),
    ("echo, 50 conns × 16 in flight, 64 B", "echo", (50, 64, 16), True),
    ("echo, 50 conns, 16 KiB", "echo", (50, 16384, 1), True),
    ("echo, 1 conn, 100 KB", "echo", (1, 100000, 1), True),
    ("echo, 10 conns, 100 KB", "echo", (10, 100000, 1), True),
    ("connect rate, 50 at once, 64 B", "connect", (50, 64, 1), True),
]
UDP_TESTS = [
    ("UDP, 32 in flight, 64 B", "udp", (32, 64, 1), True),
]


def start_servers(servers, label, rows):
    up = []
    for s in servers:
        if not s.available():
            rows.append(row(label, s, note="not available: %s" % s.argv[0]))
            continue
        try:
            up.append(s.start())
        except RuntimeError as e:
            log(e)
            rows.append(row(label, s, note=str(e)))
    return up


def row(label, s, runs=None, base=None, note=""):
    """One line of the load table from the runs of server s by round (and sockflow's,
    base): the median run, and the median and spread of the per-round ratios."""
    runs = runs or {}
    good = [r for r in runs.values() if r]
    out = {"label": label, "name": s.name, "key": s.key, "note": note, "runs": runs,
           "r": median_run(good), "rate": spread(r["rps"] for r in good),
           "cpu": spread(r.get("cpu_us") for r in good),
           "busy": spread(r.get("server_busy") for r in good),
           "kernel": spread(r.get("server_kernel") for r in good),
           "syscalls": spread(r.get("syscalls") for r in good)}
    if base is not None:
        both = [k for k in runs if runs[k] and base.get(k)]
        out["ratio"] = spread(runs[k]["rps"] / base[k]["rps"] for k in both if base[k]["rps"])
        out["cpu_ratio"] = spread(runs[k]["cpu_us"] / base[k]["cpu_us"] for k in both
                                  if runs[k].get("cpu_us") and base[k].get("cpu_us"))
    return out


def run_matrix(tests, servers, a, rows):
    """Every test against every server, round after round; the order of the servers turns
    each round so that none always runs first or last."""
    up = start_servers(servers, tests[0][0], rows)
    results, died = {}, {}
    try:
        for rnd in range(a.rounds):
            for label, mode, load, _ in tests:
                order = up[rnd % len(up):] + up[:rnd % len(up)] if up else []
                for s in order:
                    if s.p.poll() is not None:
                        died.setdefault(s.name, s.p.returncode)
                        continue
                    settle()
                    r = bench(mode, s.port, load, a.secs, a.warmup, a.threads, server=s)
                    results.setdefault((label, s.key), {})[rnd] = r
                    if r:
                        log("  %-38s %-18s %12.0f /s  server %5.1f µs/request, %3.0f %% busy, "
                            "%3.0f %% of it in the kernel" % (
                                label, s.name, r["rps"], r.get("cpu_us", 0),
                                100 * r.get("server_busy", 0), 100 * r.get("server_kernel", 0)))
    finally:
        for s in up:
            s.stop()
    for label, _, _, _ in tests:
        base = results.get((label, "sockflow"))
        for s in up:
            runs = results.get((label, s.key), {})
            note = "" if any(runs.values()) or s.name not in died else \
                "the server exited (status %s)" % died[s.name]
            rows.append(row(label, s, runs, base, note))


def run_stream(a, rows):
    """sockflow bench stream against sockflow's discard service (from its chargen with
    --recv), iperf3 against itself (-R: the server sends), alternated. socat writing to
    /dev/null stands in where sockflow has no discard service."""
    services = sockflow_services()
    cases = []
    if "discard" in services:
        cases.append(("stream, 1 conn, 128 KiB writes", Server(
            "sockflow discard", "tcp", sockflow_serve("tcp", "discard")), [], [], ""))
    else:
        cases.append(("stream, 1 conn, 128 KiB writes", Server(
            "socat → /dev/null", "tcp", ["socat", "-b", "131072", "-u", "TCP-LISTEN:{port},"
                                         "bind=127.0.0.1,reuseaddr,fork", "OPEN:/dev/null"],
            banner=False), [], [], "sockflow has no discard service here: socat stands in"))
    if "chargen" in services:
        cases.append(("stream, 1 conn, reading (--recv)", Server(
            "sockflow chargen", "tcp", sockflow_serve("tcp", "chargen")),
            ["--recv"], ["-R"], ""))
    for label, target, ours_args, iperf_args, note in cases:
        ours, theirs = [], []
        for rnd in range(a.rounds):
            for which in ((0, 1) if rnd % 2 == 0 else (1, 0)):
                if which == 1:
                    theirs.append(iperf3(a.secs, iperf_args))
                    continue
                target.start()
                try:
                    ours.append(bench("stream", target.port, (1, "128k", 1), a.secs,
                                      a.warmup, 1, extra=ours_args))
                finally:
                    target.stop()
        r = median_run(ours)
        if r:
            r["gbps"] = r["bits_per_sec"] / 1e9
        rows.append({"label": label, "name": "sockflow bench → " + target.name, "r": r,
                     "note": note, "stream": True})
        good = sorted(x for x in theirs if x)
        rows.append({"label": label, "name": "iperf3 %s→ iperf3 -s" % (
            " ".join(iperf_args) + " " if iperf_args else ""), "stream": True,
            "r": {"gbps": good[(len(good) - 1) // 2] / 1e9} if good else None,
            "note": "" if good else "iperf3 not available"})


def iperf3(secs, extra=()):
    if _which("iperf3") is None:
        return None
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, start_new_session=True,
                           preexec_fn=server_preexec)
    running.append(srv)
    try:
        if not wait_tcp(port):
            return None
        time.sleep(0.2)
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(secs),
                            "-l", "128K", "-J"] + list(extra), capture_output=True, text=True,
                           timeout=secs + 30, preexec_fn=gen_preexec)
        d = json.loads(r.stdout)
        return d["end"]["sum_received" if extra else "sum_sent"]["bits_per_second"]
    except (ValueError, KeyError, subprocess.TimeoutExpired):
        return None
    finally:
        stop(srv)


# ---- memory per idle connection ------------------------------------------------------

def proc_tree(pid):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pid):
    """(RSS of the server, summed over its processes; PSS likewise: shared pages counted
    once in all, which is what a fork server really costs)"""
    procs = proc_tree(pid)
    return (sum(status_kb(p, "VmRSS") for p in procs), sum(pss_kb(p) for p in procs),
            len(procs))


def clients_held(server):
    """Connections the server holds: its children for a fork server, else its sockets."""
    if server.forks:
        return len(proc_tree(server.p.pid)) - 1
    return sockets_held(server.p.pid)


def sockets_held(pid):
    n = 0
    for p in proc_tree(pid):
        try:
            for fd in os.listdir("/proc/%d/fd" % p):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (p, fd)).startswith("socket:"):
                        n += 1
                except OSError:
                    pass
        except OSError:
            pass
    return n


def wait_connected(socks, timeout):
    """Until every socket is writable (connected or failed), at most timeout seconds."""
    poller = select.poll()
    left = {s.fileno() for s in socks}
    for fd in left:
        poller.register(fd, select.POLLOUT)
    end = time.monotonic() + timeout
    while left and time.monotonic() < end:
        for fd, _ in poller.poll(100):
            poller.unregister(fd)
            left.discard(fd)


def idle_memory(server, count, deadline_s=90):
    server.start()
    socks = []
    try:
        time.sleep(0.3)
        base_sockets = clients_held(server)
        before = memory(server.p.pid)
        end = time.monotonic() + deadline_s
        while len(socks) < count and time.monotonic() < end:
            batch = []
            for _ in range(min(500, count - len(socks))):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", server.port))
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                batch.append(s)
            wait_connected(batch, 10)
            socks.extend(batch)
            # let the server catch up before the next batch (fork servers are slow)
            wait_until = time.monotonic() + 10
            while (clients_held(server) - base_sockets < len(socks) and
                   time.monotonic() < wait_until):
                time.sleep(0.05)
        while clients_held(server) - base_sockets < len(socks) and time.monotonic() < end:
            time.sleep(0.2)
        held = clients_held(server) - base_sockets
        time.sleep(0.5)
        after = memory(server.p.pid)
        return {"conns": held, "rss_before": before[0], "rss_after": after[0],
                "pss_before": before[1], "pss_after": after[1], "procs": after[2]}
    finally:
        for s in socks:
            s.close()
        server.stop()


# ---- the generator check --------------------------------------------------------------

# (mode, (connections, bytes, in flight), in --quick)
GEN_TESTS = [
    ("echo", (1, 64, 1), False), ("echo", (50, 64, 1), True), ("echo", (500, 64, 1), True),
    ("echo", (50, 64, 16), True), ("udp", (32, 64, 1), False),
]
# the generators compared: `sockflow bench` with its default threads, and with one
GENERATORS = [("epoll_gen", None), ("sockflow bench", 0), ("sockflow bench -T 1", 1)]


def gencheck(a):
    """epoll_gen and `sockflow bench` (its default threads, and one thread), alternated
    against one sockflow server, which is timed over each run."""
    tcp = Server("sockflow", "tcp", sockflow_serve("tcp")).start()
    udp = Server("sockflow", "udp", sockflow_serve("udp")).start()
    rows = []
    try:
        for mode, load, in_quick in GEN_TESTS:
            if a.quick and not in_quick:
                continue
            srv = udp if mode == "udp" else tcp
            runs = {g: {} for g, _ in GENERATORS}
            for rnd in range(a.gen_rounds):
                k = rnd % len(GENERATORS)
                for g, threads in GENERATORS[k:] + GENERATORS[:k]:
                    if threads is None:
                        r = epoll_gen(mode, srv.port, load, a.secs, a.warmup, server=srv,
                                      pin=False)
                    else:
                        r = bench(mode, srv.port, load, a.secs, a.warmup, threads or None,
                                  server=srv, pin=False)
                    runs[g][rnd] = r
            label = "%s -c %d%s" % (mode, load[0], " -P %d" % load[2] if load[2] > 1 else "")
            rows.append((label, runs))
            log("  gencheck %-18s %s" % (label, "  ".join(
                "%s %s" % (g, fmt_num(spread(r["rps"] for r in runs[g].values() if r)[0]))
                for g, _ in GENERATORS if any(runs[g].values()))))
    finally:
        tcp.stop()
        udp.stop()
    return rows


# ---- the report -------------------------------------------------------------------------

def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024 // 1024
    except OSError:
        pass
    distro = ""
    try:
        with open("/etc/os-release") as f:
            distro = dict(l.rstrip().split("=", 1) for l in f if "=" in l).get(
                "PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    return "%s, %d CPUs, %d GiB, Linux %s, %s" % (model or platform.processor(),
                                                 os.cpu_count() or 0, mem,
                                                 platform.release(), distro)


def sockflow_build():
    """The binary measured and the commit of the tree it was built from."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    head = git("log", "-1", "--format=%h (%s)", "--", "src", "include")
    dirty = git("status", "--porcelain", "--", "src", "include")
    return "%s, its sources last changed in %s%s" % (
        os.path.relpath(SOCKFLOW, ROOT), head or "an unknown commit",
        ", with changes not committed" if dirty else "")


def versions():
    def first(argv, pat=None):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            text = (out.stdout + out.stderr).strip().splitlines()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        for line in text:
            if pat is None or re.search(pat, line):
                return line.strip()
        return "?"
    return [
        "libuv " + first(["pkg-config", "--modversion", "libuv"]),
        "libevent " + first(["pkg-config", "--modversion", "libevent"]),
        "node " + first(["node", "--version"]),
        first(["socat", "-V"], r"socat version").split(" on ")[0],
        first(["iperf3", "--version"]).split(" (")[0],
    ]


def fmt_num(v, digits=0):
    return "{:,.{}f}".format(v, digits)


def fmt_spread(sp, digits=2):
    """median (min–max), or the median alone when there was one round."""
    if not sp:
        return "–"
    m, lo, hi = sp
    if lo == hi:
        return "%.*f" % (digits, m)
    return "%.*f (%.*f–%.*f)" % (digits, m, digits, lo, digits, hi)


def fmt_us(v):
    return "–" if v is None else fmt_num(v, 1 if v < 100 else 0)


def table(rows):
    out = ["| test | server | requests/s | ÷ sockflow | server CPU | in kernel "
           "| CPU µs/request | ÷ sockflow | p50 µs | p99 µs | notes |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    base = {}
    for x in rows:
        if x.get("stream") and x["r"] and x["name"].startswith("sockflow bench"):
            base[x["label"]] = x["r"]
    for x in rows:
        label, name, r, note = x["label"], x["name"], x["r"], x["note"]
        if r is None:
            out.append("| %s | %s | – | – | – | – | – | – | – | – | %s |" % (
                label, name, note or "no result"))
            continue
        if x.get("stream"):
            b = base.get(label)
            ratio = r["gbps"] / b["gbps"] if b and b.get("gbps") else None
            out.append("| %s | %s | %s Gbit/s | %s | – | – | – | – | – | – | %s |" % (
                label, name, fmt_num(r["gbps"], 2), "%.2f" % ratio if ratio else "–", note))
            continue
        lat = r.get("latency_us") or {}
        notes = [n for n in (note, error_note(r)) if n]
        if r.get("sources"):
            notes.append("%d source addresses" % len(r["sources"]))
        if x.get("syscalls"):
            notes.append("%.2f system calls per request" % x["syscalls"][0])
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, name, fmt_num(x["rate"][0]), fmt_spread(x.get("ratio")),
            "%.0f %%" % (100 * x["busy"][0]) if x["busy"] else "–",
            "%.0f %%" % (100 * x["kernel"][0]) if x["kernel"] else "–",
            fmt_us(x["cpu"][0] if x["cpu"] else None), fmt_spread(x.get("cpu_ratio")),
            fmt_us(lat.get("p50")), fmt_us(lat.get("p99")), "; ".join(notes)))
    return "\n".join(out)


def limit_rows(rows, tests):
    """Per main test: sockflow ÷ each of the reference, libuv and libevent, the median and
    spread of the per-round ratios of requests/s and of server CPU per request."""
    out = []
    by = {(x["label"], x.get("key")): x for x in rows if not x.get("stream")}
    for label, mode, _, main_row in tests:
        if not main_row:
            continue
        ours = by.get((label, "sockflow"))
        proto = "udp" if mode == "udp" else "tcp"
        for key in (REFERENCE[proto], "libuv", "libevent"):
            x = by.get((label, key))
            if not ours or not x or not x["r"] or not ours["r"]:
                continue
            both = [k for k in ours["runs"] if ours["runs"][k] and x["runs"].get(k)]
            o, t = ours["runs"], x["runs"]
            out.append((label, x["name"],
                        spread(o[k]["rps"] / t[k]["rps"] for k in both if t[k]["rps"]),
                        spread(o[k]["cpu_us"] / t[k]["cpu_us"] for k in both
                               if o[k].get("cpu_us") and t[k].get("cpu_us")),
                        ours["cpu"], x["cpu"], len(both)))
    return out


def limit_table(lim):
    out = ["| test | against | sockflow ÷ it, requests/s | sockflow ÷ it, server CPU per "
           "request | sockflow µs/request | its µs/request | rounds |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, name, rate, cpu, ocpu, tcpu, n in lim:
        out.append("| %s | %s | %s | %s | %s | %s | %d |" % (
            label, name, fmt_spread(rate), fmt_spread(cpu),
            fmt_us(ocpu[0] if ocpu else None), fmt_us(tcpu[0] if tcpu else None), n))
    return "\n".join(out)


def mem_table(mem):
    out = ["| server | idle connections | before | after | per connection | processes |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, want, m in mem:
        if not m or "conns" not in m:
            out.append("| %s | – of %s | – | – | – | – |" % (name, fmt_num(want)))
            continue
        multi = m["procs"] > 1
        key = "pss" if multi else "rss"
        per = (m[key + "_after"] - m[key + "_before"]) * 1024 / max(m["conns"], 1)
        out.append("| %s | %s%s | %s KiB | %s KiB | %s bytes%s | %d |" % (
            name, fmt_num(m["conns"]), "" if m["conns"] == want else " of " + fmt_num(want),
            fmt_num(m[key + "_before"]), fmt_num(m[key + "_after"]), fmt_num(per),
            " (PSS)" if multi else "", m["procs"]))
    return "\n".join(out)


def gen_table(rows):
    names = [g for g, _ in GENERATORS]
    out = ["| load | generator | requests/s | ÷ epoll_gen | its CPU | server CPU | p99 µs "
           "| runs |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for label, runs in rows:
        base = runs["epoll_gen"]
        for g in names:
            good = {k: r for k, r in runs[g].items() if r}
            if not good:
                out.append("| %s | %s | – | – | – | – | – | no result |" % (label, g))
                continue
            both = [k for k in good if base.get(k) and base[k]["rps"]]
            lat = (median_run(list(good.values())).get("latency_us") or {}).get("p99")
            busy = spread(r.get("server_busy") for r in good.values())
            shown = g
            if g == "sockflow bench":
                t = "/".join(sorted({str(r.get("threads", "?")) for r in good.values()}))
                shown += " (default: %s thread%s)" % (t, "" if t == "1" else "s")
            out.append("| %s | %s | %s | %s | %.0f %% | %s | %s | %s |" % (
                label, shown, fmt_num(spread(r["rps"] for r in good.values())[0]),
                "–" if g == "epoll_gen" else
                fmt_spread(spread(good[k]["rps"] / base[k]["rps"] for k in both)),
                100 * statistics.median(r["cpu_busy"] for r in good.values()),
                "%.0f %%" % (100 * busy[0]) if busy else "–", fmt_us(lat),
                " ".join(fmt_num(good[k]["rps"] / 1000) + "k" for k in sorted(good))))
    return "\n".join(out)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secs", type=float, default=1.5, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds: every server once per round, in turn (median kept)")
    ap.add_argument("--threads", type=int, default=1,
                    help="sockflow bench -T (default 1: the other core is the server's)")
    ap.add_argument("--idle", default="10000,19800",
                    help="idle connections per server, a comma list (the larger counts only "
                         "for the one-process event-loop servers)")
    ap.add_argument("--gen-rounds", type=int, default=5, help="rounds of the generator check")
    ap.add_argument("--only", choices=["tcp", "udp", "stream", "memory", "gencheck"],
                    action="append", help="run only these sections")
    ap.add_argument("--servers", help="only these servers, a comma list of: sockflow, epoll, "
                    "libuv, libevent, node, socat, unp-thread, unp-fork, recvmmsg, recvfrom, "
                    "sockflow-nogso")
    ap.add_argument("--syscalls", action="store_true",
                    help="count the server's system calls per request with perf stat (which "
                         "slows the server a little: its CPU figures are then not comparable)")
    ap.add_argument("--quick", action="store_true",
                    help="about a minute: one round of the main rows, sockflow against the "
                         "references only; printed, not written")
    ap.add_argument("--no-pin", action="store_true",
                    help="leave servers and generators on every CPU (by default the servers "
                         "run on the upper half of the CPUs, the generators on the lower)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    a = ap.parse_args()
    a.write = a.only is None and not a.quick or a.out != ap.get_default("out")
    if a.quick:
        a.secs, a.warmup, a.rounds, a.gen_rounds = 1.0, 0.3, 1, 1
        a.idle = "10000"
        a.servers = a.servers or "sockflow,epoll,recvmmsg"
        a.only = a.only or ["tcp", "udp", "memory", "gencheck"]
    a.idle = [int(x) for x in str(a.idle).split(",") if x]
    a.servers = set(a.servers.split(",")) if a.servers else None
    return a


def run_memory(a):
    mem = []
    for i, count in enumerate(a.idle):
        for s in tcp_servers(a.servers):
            if i > 0 and not s.many:
                continue
            if not s.available():
                mem.append((s.name, count, None))
                continue
            try:
                m = idle_memory(s, count)
            except RuntimeError as e:
                log(e)
                m = None
            mem.append((s.name, count, m))
            if m:
                log("  %-16s %d connections held" % (s.name, m["conns"]))
    return mem


def pinning():
    if not SERVER_CPUS:
        return "Generator and server share the machine's cores (--no-pin)."
    cpus = lambda s: "CPU%s %s" % ("" if len(s) == 1 else "s", ",".join(map(str, sorted(s))))
    return ("Every server, with its threads and children, runs on %s, the generator on %s "
            "(the generator check leaves its generators free): one core is the server's, "
            "whatever its design." % (cpus(SERVER_CPUS), cpus(GEN_CPUS)))


def report(a, rows, lim, mem, gen, took, load0, load1):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = ["# sockflow against the servers people pick instead", "",
           "Written by `%s` (bench/compare) on %s, in %.0f s." % (
               "make bench-quick" if a.quick else "make bench", now, took), "",
           "- machine: %s" % machine(),
           "- sockflow: %s" % sockflow_build(),
           "- load average (1 min) when the runs began: %.2f, when the load runs ended: %.2f (other "
           "work on the machine makes every figure noisier)" % (load0, load1),
           "- waits for the servers' CPUs to go quiet before a run: %d longer than 0.15 s, "
           "%.1f s in all" % (SETTLED["waits"], SETTLED["secs"]),
           "- peers: %s" % ", ".join(versions()),
           "- every server on 127.0.0.1, one at a time under load, driven by the same "
           "`sockflow bench` settings: %g s measured after %g s of warm-up, %d thread%s, "
           "%d round%s; in each round every server runs once, the order turning from round to "
           "round, so drift hits all alike; before each run the script waits until the "
           "servers' CPUs are quiet (at most 3 s: a fork server's children go on exiting "
           "after its run). %s" % (
               a.secs, a.warmup, a.threads, "" if a.threads == 1 else "s", a.rounds,
               "" if a.rounds == 1 else "s", pinning()),
           "- requests/s and CPU per request: the median over the rounds. \"÷ sockflow\": the "
           "ratio to sockflow in the same round, median (min–max) over the rounds. Server "
           "CPU: its utime + stime from /proc/PID/stat over the measured window (for fork "
           "servers with their children), as a share of one CPU, and divided by the requests "
           "of that window (in the connect row a request is a whole connection).",
           "- `sockflow serve` runs with its defaults (one event loop), for UDP with "
           "`--udp-rate 0`: by default it answers one source at most 1000 times a second.",
           "- the connect rate is the whole flow per request: socket, connect, write, read "
           "the echo, close; the generator spreads its connections over 127.0.0.2–127.0.0.9, "
           "since one source address runs out of ephemeral ports near 14k connections/s "
           "(TIME_WAIT stays on the client, which closes first).", ""]
    if lim:
        doc += ["## Against the references", "",
                "sockflow ÷ the hand-tuned single-thread epoll server (bench/peers/epoll_echo.c), "
                "the recvmmsg/sendmmsg loop (bench/peers/mmsg_echo.c), libuv and libevent: "
                "per-round ratios, median (min–max). Above 1 in the requests column and below 1 "
                "in the CPU column is sockflow ahead.", "", limit_table(lim), ""]
    if rows:
        doc += ["## Load", "", table(rows), ""]
    if mem:
        doc += ["## Memory per idle connection", "",
                "%s connections opened and left idle; the server's memory read from /proc "
                "before and after. One process: VmRSS. Several (fork servers): the PSS of "
                "every process summed, so that pages shared after fork() count once; their "
                "summed RSS would count the shared libraries once per connection. Kernel "
                "socket buffers are not in either. The larger counts only for the servers "
                "that hold connections in one process without a thread each; the descriptor "
                "limit is %d on both sides." % (" and ".join(fmt_num(c) for c in a.idle),
                                                 NOFILE), "", mem_table(mem), ""]
    if gen:
        doc += ["## Generator check", "",
                "bench/peers/epoll_gen, a plain single-threaded epoll generator, and "
                "`sockflow bench` with its default threads and with one, alternated against "
                "one `sockflow serve`, %d round%s of %g s each after %g s of warm-up. "
                "\"÷ epoll_gen\": per-round ratio, median (min–max). \"Its CPU\": the share "
                "of one CPU the generator used; \"server CPU\": the server's. A generator that "
                "takes the server's core shows as a lower server share and a lower rate." % (
                    a.gen_rounds, "" if a.gen_rounds == 1 else "s", a.secs, a.warmup),
                "", gen_table(gen), ""]
    return "\n".join(doc)


def main():
    global SYSCALLS, SERVER_CPUS, GEN_CPUS
    a = parse_args()
    SYSCALLS = a.syscalls
    SERVER_CPUS, GEN_CPUS = split_cpus(not a.no_pin)
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    only = set(a.only or ["tcp", "udp", "stream", "memory", "gencheck"])
    tcp_tests = [t for t in TCP_TESTS if t[3] or not a.quick]
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    rows, mem, gen = [], [], []
    try:
        if "tcp" in only:
            log("== TCP echo servers")
            run_matrix(tcp_tests, tcp_servers(a.servers), a, rows)
        if "udp" in only:
            log("== UDP echo servers")
            run_matrix(UDP_TESTS, udp_servers(a.servers), a, rows)
        if "stream" in only:
            log("== stream")
            run_stream(a, rows)
        if "gencheck" in only:
            log("== generator check: sockflow bench against a plain epoll generator")
            gen = gencheck(a)
        load1 = os.getloadavg()[0]
        if "memory" in only:
            log("== memory per idle connection (%s each)" % ", ".join(map(str, a.idle)))
            mem = run_memory(a)
    finally:
        stop_all()
    lim = limit_rows(rows, tcp_tests + UDP_TESTS)
    text = report(a, rows, lim, mem, gen, time.monotonic() - t0, load0, load1)
    print(text)
    if a.write:
        with open(a.out, "w") as f:
            f.write(text)
        log("written to %s" % os.path.relpath(a.out, ROOT))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
