#!/usr/bin/python3
"""compare: sockflow against the servers people pick instead, on loopback, driven by
`sockflow bench` with the same settings for all, runs alternated so that drift on a
noisy machine hits every server alike. Writes bench/RESULTS.md.

Run through bench/compare (make bench), which installs and builds the peers first.
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
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
PBIN = os.path.join(PEERS, "bin")
SOCKFLOW = os.environ.get("SOCKFLOW", os.path.join(ROOT, "build", "rel", "sockflow"))
NOFILE = 20000          # for the idle-connection test, both sides

running = []            # every process started here, stopped by its process group


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- processes ----------------------------------------------------------------------

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(NOFILE, hard) if hard != resource.RLIM_INFINITY else NOFILE
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


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
    def __init__(self, name, proto, argv, banner=True, forks=False):
        self.name, self.proto, self.argv, self.banner = name, proto, argv, banner
        self.forks = forks      # a process per connection
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
                                  preexec_fn=raise_nofile, cwd=PEERS)
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


def tcp_servers():
    return [
        Server("sockflow", "tcp", [SOCKFLOW, "serve", "-q", "-t", "-4", "echo:0"]),
        Server("libuv", "tcp", [os.path.join(PBIN, "uv_echo"), "0"]),
        Server("libevent", "tcp", [os.path.join(PBIN, "ev_echo"), "0"]),
        Server("node net", "tcp", ["node", "node_echo.js", "0"]),
        Server("socat fork", "tcp", ["socat", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,"
                                     "fork,backlog=1024", "PIPE"], banner=False, forks=True),
        Server("UNP thread", "tcp", [os.path.join(PBIN, "unp_thread_echo"), "0"]),
        Server("UNP fork", "tcp", [os.path.join(PBIN, "unp_fork_echo"), "0"], forks=True),
    ]


def udp_servers():
    return [
        Server("sockflow", "udp", [SOCKFLOW, "serve", "-q", "-u", "-4", "--udp-rate", "0",
                                   "echo:0"]),
        Server("recvfrom loop", "udp", [os.path.join(PBIN, "udp_echo"), "0"]),
        Server("node dgram", "udp", ["node", "node_udp_echo.js", "0"]),
    ]


# ---- running sockflow bench ---------------------------------------------------------

def child_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def bench(mode, port, args, secs, warmup, threads):
    argv = [SOCKFLOW, "bench", mode, "127.0.0.1", str(port), "-d", str(secs),
            "--warmup", str(warmup), "--json", "-i", "0"] + list(args)
    if threads:
        argv += ["-T", str(threads)]
    cpu0, t0 = child_cpu(), time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + warmup + 60)
    except subprocess.TimeoutExpired:
        return None
    busy = (child_cpu() - cpu0) / max(time.monotonic() - t0, 1e-3)
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            d = json.loads(line)
            d["cpu_busy"] = busy    # share of one CPU the generator used, start to end
            return d
    log("sockflow bench gave no result: %s" % r.stderr.strip())
    return None


def epoll_gen(mode, port, conns, pipeline, secs):
    argv = [os.path.join(PBIN, "epoll_gen"), mode, "127.0.0.1", str(port), "-c", str(conns),
            "-s", "64", "-d", str(secs)]
    if mode == "echo":
        argv += ["-P", str(pipeline)]
    cpu0, t0 = child_cpu(), time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
    busy = (child_cpu() - cpu0) / max(time.monotonic() - t0, 1e-3)
    m = re.search(r"rps=(\d+)", r.stdout)
    return (int(m.group(1)) if m else 0), busy


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

TCP_TESTS = [
    ("echo, 1 conn, 64 B", "echo", ["-c", "1", "--size", "64"]),
    ("echo, 50 conns, 64 B", "echo", ["-c", "50", "--size", "64"]),
    ("echo, 500 conns, 64 B", "echo", ["-c", "500", "--size", "64"]),
    ("echo, 50 conns × 16 in flight, 64 B", "echo", ["-c", "50", "-P", "16", "--size", "64"]),
    ("echo, 50 conns, 16 KiB", "echo", ["-c", "50", "--size", "16k"]),
    ("connect rate, 50 at once, 64 B", "connect", ["-c", "50", "--size", "64"]),
]
UDP_TESTS = [
    ("UDP, 32 in flight, 64 B", "udp", ["-c", "32", "--size", "64"]),
]


def run_matrix(tests, servers, a, rows):
    """Every test against every server, round after round; the order of the servers turns
    each round so that none always runs first or last."""
    up = []
    for s in servers:
        if not s.available():
            rows.append((tests[0][0], s.name, None, "not available: %s" % s.argv[0]))
            continue
        try:
            up.append(s.start())
        except RuntimeError as e:
            log(e)
            rows.append((tests[0][0], s.name, None, str(e)))
    results, died = {}, {}
    try:
        for rnd in range(a.rounds):
            for label, mode, args in tests:
                order = up[rnd % len(up):] + up[:rnd % len(up)] if up else []
                for s in order:
                    if s.p.poll() is not None:
                        died.setdefault(s.name, s.p.returncode)
                        continue
                    r = bench(mode, s.port, args, a.secs, a.warmup, a.threads)
                    results.setdefault((label, s.name), []).append(r)
                    if r:
                        log("  %-38s %-14s %12.0f /s" % (label, s.name, r["rps"]))
    finally:
        for s in up:
            s.stop()
    for label, _, _ in tests:
        for s in up:
            r = median_run(results.get((label, s.name), []))
            note = "" if r or s.name not in died else "the server exited (status %s)" % died[s.name]
            rows.append((label, s.name, r, note))


def run_stream(a, rows):
    """sockflow bench stream against sockflow's discard service (from its chargen with
    --recv), iperf3 against itself (-R: the server sends), alternated. socat writing to
    /dev/null stands in where sockflow has no discard service."""
    services = sockflow_services()
    cases = []
    if "discard" in services:
        cases.append(("stream, 1 conn, 128 KiB writes", Server(
            "sockflow discard", "tcp", [SOCKFLOW, "serve", "-q", "-t", "-4", "discard:0"]),
            [], [], ""))
    else:
        cases.append(("stream, 1 conn, 128 KiB writes", Server(
            "socat → /dev/null", "tcp", ["socat", "-b", "131072", "-u", "TCP-LISTEN:{port},"
                                         "bind=127.0.0.1,reuseaddr,fork", "OPEN:/dev/null"],
            banner=False), [], [], "sockflow has no discard service here: socat stands in"))
    if "chargen" in services:
        cases.append(("stream, 1 conn, reading (--recv)", Server(
            "sockflow chargen", "tcp", [SOCKFLOW, "serve", "-q", "-t", "-4", "chargen:0"]),
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
                    ours.append(bench("stream", target.port, ["-c", "1", "--size", "128k"] +
                                      ours_args, a.secs, a.warmup, 1))
                finally:
                    target.stop()
        r = median_run(ours)
        if r:
            r["gbps"] = r["bits_per_sec"] / 1e9
        rows.append((label, "sockflow bench → " + target.name, r, note))
        good = sorted(x for x in theirs if x)
        rows.append((label, "iperf3 %s→ iperf3 -s" % (" ".join(iperf_args) + " " if iperf_args
                                                      else ""),
                     {"gbps": good[(len(good) - 1) // 2] / 1e9} if good else None,
                     "" if good else "iperf3 not available"))


def iperf3(secs, extra=()):
    if _which("iperf3") is None:
        return None
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    running.append(srv)
    try:
        if not wait_tcp(port):
            return None
        time.sleep(0.2)
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(secs),
                            "-l", "128K", "-J"] + list(extra), capture_output=True, text=True,
                           timeout=secs + 30)
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

GEN_TESTS = [
    ("echo", 1, 1), ("echo", 50, 1), ("echo", 500, 1), ("echo", 50, 16), ("udp", 32, 1),
]


def gencheck(a):
    """sockflow bench and epoll_gen, alternated, against one sockflow server."""
    tcp = Server("sockflow", "tcp", [SOCKFLOW, "serve", "-q", "-t", "-4", "echo:0"]).start()
    udp = Server("sockflow", "udp", [SOCKFLOW, "serve", "-q", "-u", "-4", "--udp-rate", "0",
                                     "echo:0"]).start()
    rows = []
    try:
        for mode, conns, pipeline in GEN_TESTS:
            port = udp.port if mode == "udp" else tcp.port
            ours, theirs = [], []
            for rnd in range(a.gen_rounds):
                args = ["-c", str(conns), "--size", "64"] + (["-P", str(pipeline)]
                                                          if mode == "echo" else [])
                for which in ((0, 1) if rnd % 2 == 0 else (1, 0)):
                    if which == 0:
                        r = bench(mode, port, args, a.secs, 0, a.threads)
                        ours.append((r["rps"], r["cpu_busy"]) if r else (0, 0))
                    else:
                        theirs.append(epoll_gen(mode, port, conns, pipeline, a.secs))
            label = "%s -c %d%s" % (mode, conns, " -P %d" % pipeline if pipeline > 1 else "")
            row = (label, [x[0] for x in theirs], [x[0] for x in ours],
                   statistics.median(x[1] for x in theirs), statistics.median(x[1] for x in ours))
            rows.append(row)
            t, o = statistics.median(row[1]), statistics.median(row[2])
            log("  gencheck %-18s epoll_gen %10.0f  sockflow bench %10.0f  %.2f" %
                (label, t, o, o / t if t else 0))
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


def table(rows, a):
    out = ["| test | server | requests/s | p50 µs | p99 µs | ÷ sockflow | notes |",
           "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    base = {}
    for label, name, r, note in rows:
        if r and (name == "sockflow" or name.startswith("sockflow bench")):
            base[label] = r
    for label, name, r, note in rows:
        if r is None:
            out.append("| %s | %s | – | – | – | – | %s |" % (label, name, note or "no result"))
            continue
        b = base.get(label)
        if "gbps" in r:
            ratio = r["gbps"] / b["gbps"] if b and b.get("gbps") else None
            out.append("| %s | %s | %s Gbit/s | – | – | %s | %s |" % (
                label, name, fmt_num(r["gbps"], 2), "%.2f" % ratio if ratio else "–", note))
            continue
        lat = r.get("latency_us") or {}
        ratio = r["rps"] / b["rps"] if b and b["rps"] else None
        notes = [n for n in (note, error_note(r)) if n]
        if r.get("sources"):
            notes.append("%d source addresses" % len(r["sources"]))
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, name, fmt_num(r["rps"]), fmt_num(lat.get("p50", 0), 0 if lat.get("p50", 0)
                                                    >= 100 else 1),
            fmt_num(lat.get("p99", 0), 0 if lat.get("p99", 0) >= 100 else 1),
            "%.2f" % ratio if ratio is not None else "–", "; ".join(notes)))
    return "\n".join(out)


def mem_table(mem):
    out = ["| server | idle connections | before | after | per connection | processes |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in mem:
        if not m or "conns" not in m:
            out.append("| %s | – | – | – | – | – |" % name)
            continue
        multi = m["procs"] > 1
        key = "pss" if multi else "rss"
        per = (m[key + "_after"] - m[key + "_before"]) * 1024 / max(m["conns"], 1)
        out.append("| %s | %s | %s KiB | %s KiB | %s bytes%s | %d |" % (
            name, fmt_num(m["conns"]), fmt_num(m[key + "_before"]), fmt_num(m[key + "_after"]),
            fmt_num(per), " (PSS)" if multi else "", m["procs"]))
    return "\n".join(out)


def gen_table(rows):
    out = ["| load | epoll_gen /s | its CPU | sockflow bench /s | its CPU | ratio of medians "
           "| runs: epoll_gen | runs: sockflow bench |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for label, theirs, ours, tcpu, ocpu in rows:
        t, o = statistics.median(theirs), statistics.median(ours)
        out.append("| %s | %s | %.0f %% | %s | %.0f %% | %.2f | %s | %s |" % (
            label, fmt_num(t), 100 * tcpu, fmt_num(o), 100 * ocpu, o / t if t else 0,
            " ".join(fmt_num(x / 1000) + "k" for x in theirs),
            " ".join(fmt_num(x / 1000) + "k" for x in ours)))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secs", type=float, default=2.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per cell (median kept)")
    ap.add_argument("--threads", type=int, default=1,
                    help="sockflow bench -T (default 1: the other core is the server's)")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections per server")
    ap.add_argument("--gen-rounds", type=int, default=5, help="runs per generator check")
    ap.add_argument("--only", choices=["tcp", "udp", "stream", "memory", "gencheck"],
                    action="append", help="run only these sections")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    a = ap.parse_args()
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    only = set(a.only or ["tcp", "udp", "stream", "memory", "gencheck"])
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    rows, mem, gen = [], [], []
    try:
        if "tcp" in only:
            log("== TCP echo servers")
            run_matrix(TCP_TESTS, tcp_servers(), a, rows)
        if "udp" in only:
            log("== UDP echo servers")
            run_matrix(UDP_TESTS, udp_servers(), a, rows)
        if "stream" in only:
            log("== stream")
            run_stream(a, rows)
        if "gencheck" in only:
            log("== generator check: sockflow bench against a plain epoll generator")
            gen = gencheck(a)
        load1 = os.getloadavg()[0]
        if "memory" in only:
            log("== memory per idle connection (%d each)" % a.idle)
            for s in tcp_servers():
                if not s.available():
                    mem.append((s.name, None))
                    continue
                try:
                    m = idle_memory(s, a.idle)
                except RuntimeError as e:
                    log(e)
                    m = None
                mem.append((s.name, m))
                if m:
                    log("  %-12s %d connections held" % (s.name, m["conns"]))
    finally:
        stop_all()
    took = time.monotonic() - t0
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = ["# sockflow against the servers people pick instead", "",
           "Written by `make bench` (bench/compare) on %s, in %.0f s." % (now, took), "",
           "- machine: %s" % machine(),
           "- load average (1 min) when the runs began: %.2f, when the load runs ended: %.2f (other "
           "work on the machine makes every figure noisier)" % (load0, load1),
           "- peers: %s" % ", ".join(versions()),
           "- every server on 127.0.0.1, one at a time under load, driven by the same "
           "`sockflow bench` settings: %g s measured after %g s of warm-up, %d thread%s, "
           "median of %d runs; runs alternate between servers, round after round, so drift "
           "hits all alike. Generator and server share the machine's cores." % (
               a.secs, a.warmup, a.threads, "" if a.threads == 1 else "s", a.rounds),
           "- `sockflow serve` runs with its defaults (one event loop), for UDP with "
           "`--udp-rate 0`: by default it answers one source at most 1000 times a second.",
           "- the connect rate is the whole flow per request: socket, connect, write, read "
           "the echo, close; the generator spreads its connections over 127.0.0.2–127.0.0.9, "
           "since one source address runs out of ephemeral ports near 14k connections/s "
           "(TIME_WAIT stays on the client, which closes first).", ""]
    if rows:
        doc += ["## Load", "", table(rows, a), ""]
    if mem:
        doc += ["## Memory per idle connection", "",
                "%d connections opened and left idle; the server's memory read from /proc "
                "before and after. One process: VmRSS. Several (fork servers): the PSS of "
                "every process summed, so that pages shared after fork() count once; their "
                "summed RSS would count the shared libraries once per connection. Kernel "
                "socket buffers are not in either." % a.idle, "", mem_table(mem), ""]
    if gen:
        doc += ["## Generator check", "",
                "`sockflow bench` (%d thread%s) and bench/peers/epoll_gen, a plain "
                "single-threaded epoll generator, alternated against one `sockflow serve`, "
                "median of %d runs of %g s each. \"Its CPU\": the share of one CPU the "
                "generator used: below 100 %% it waited for the server, so the server set the "
                "pace, not the generator." % (a.threads, "" if a.threads == 1 else "s",
                                               a.gen_rounds, a.secs), "", gen_table(gen), ""]
    text = "\n".join(doc)
    print(text)
    if a.only is None or a.out != ap.get_default("out"):
        with open(a.out, "w") as f:
            f.write(text)
        log("written to %s" % os.path.relpath(a.out, ROOT))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
