"""The scan race behind bench/scan: each tool scans every port of 127.0.0.1 in turn, the
order rotating each round; wall time and CPU time (user + system, from wait4) of each run,
the median per tool, and the open ports each one found (they must agree)."""
import argparse
import os
import re
import socket
import statistics
import subprocess
import time


def tools(sockflow, ports):
    return {
        "sockflow connect -z": [sockflow, "connect", "-z", "127.0.0.1", ports],
        "nc -z -w1": ["nc", "-z", "-v", "-w1", "127.0.0.1", ports],
        "nmap -sT -p-": ["nmap", "-sT", "-n", "-Pn", f"-p{ports}", "127.0.0.1"],
    }


def open_ports(name, out):
    if name.startswith("sockflow"):
        return {int(m) for m in re.findall(r"^127\.0\.0\.1:(\d+) tcp open", out, re.M)}
    if name.startswith("nc"):
        return {int(m) for m in re.findall(r"127\.0\.0\.1 (\d+) port \[tcp/[^]]*\] succeeded", out)}
    return {int(m) for m in re.findall(r"^(\d+)/tcp\s+open", out, re.M)}


def run(argv):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read()
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = 0
    wall = time.monotonic() - t0
    return wall, ru.ru_utime + ru.ru_stime, out.decode("utf-8", "replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ports", default="1-65535")
    ap.add_argument("--netns", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    listeners = []
    for _ in range(4):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        listeners.append(s)
    mine = {s.getsockname()[1] for s in listeners}
    t = tools(os.environ.get("SOCKFLOW", "build/rel/sockflow"), a.ports)
    names = list(t)
    res = {n: [] for n in names}
    found = {n: set() for n in names}
    extra = {n: [] for n in names}      # open ports that are not ours, per round
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            wall, cpu, out = run(t[n])
            res[n].append((wall, cpu))
            found[n] = open_ports(n, out)
            extra[n].append(len(found[n] - mine))
            print(f"round {r + 1}  {n:22s} {wall:7.3f} s wall  {cpu:6.3f} s cpu  "
                  f"{len(found[n])} open", flush=True)
    try:
        load = open("/proc/loadavg").read().split()[0]
    except OSError:
        load = "?"
    where = "a network namespace of its own" if a.netns else "the host's loopback"
    print(f"\nports {a.ports} of 127.0.0.1 in {where}, {a.rounds} rounds, "
          f"{os.cpu_count()} CPUs, load average {load} at the end\n")
    print("| tool | wall s, median (min-max) | CPU s, median | open ports found (last round; "
          "more: the range over the rounds) |")
    print("| --- | --- | --- | --- |")
    for n in names:
        walls = [w for w, _ in res[n]]
        cpus = [c for _, c in res[n]]
        agree = "all 4 listeners" if mine <= found[n] else f"{len(found[n] & mine)} of 4"
        if max(extra[n]) > 0:
            agree += f", and {min(extra[n])}-{max(extra[n])} more"
        print(f"| `{n}` | {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) | "
              f"{statistics.median(cpus):.2f} | {agree} |")


if __name__ == "__main__":
    main()
