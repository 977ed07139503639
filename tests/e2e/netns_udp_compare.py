"""Run inside a private network namespace (unshare --net): answers of inetd's internal
UDP services and of sockflow's, asked from an ordinary address (the Debian inetd ignores
127/8 sources), printed as JSON. Starts both servers and stops both by their pids.

usage: netns_udp_compare.py SOCKFLOW INETD WORKDIR"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

ADDR = "192.0.2.1"      # TEST-NET-1, only inside this namespace
SERVICES = {"echo": 7, "discard": 9, "chargen": 19, "daytime": 13, "time": 37}


def ask(port, data, src_port=0, timeout=0.5):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ADDR, src_port))
        s.settimeout(timeout)
        s.sendto(data, (ADDR, port))
        try:
            return s.recvfrom(70000)[0].hex()
        except socket.timeout:
            return None


def answers(ports):
    out = {}
    out["echo"] = [ask(ports["echo"], d) for d in (b"x", b"hello\r\n", bytes(range(256)) * 4)]
    out["discard"] = ask(ports["discard"], b"anything")
    out["chargen"] = [ask(ports["chargen"], b"") for _ in range(3)]
    out["daytime"] = ask(ports["daytime"], b"")
    out["time"] = ask(ports["time"], b"")
    out["from_port_19"] = ask(ports["echo"], b"loop", src_port=19)
    out["from_port_1000"] = ask(ports["echo"], b"low", src_port=1000)
    out["at"] = time.time()
    return out


def wait_udp_bound(pid, n, deadline):
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-lunpH"], stdout=subprocess.PIPE, text=True).stdout
        if out.count(f"pid={pid},") >= n:
            return True
        time.sleep(0.05)
    return False


def main():
    sockflow, inetd, work = sys.argv[1:4]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{ADDR}/32", "dev", "lo"], check=True)
    conf = os.path.join(work, "inetd-udp.conf")
    with open(conf, "w") as f:
        for name in SERVICES:
            f.write(f"{ADDR}:{name} dgram udp wait root internal\n")
    procs = []
    try:
        ip = subprocess.Popen([inetd, "-i", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        procs.append(ip)
        sf = subprocess.Popen([sockflow, "serve", "-u", "-l", ADDR, "-q",
                               *[f"{n}:0" for n in SERVICES]],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(sf)
        ports = {}
        for _ in SERVICES:
            m = re.search(r"listening on udp \S+:(\d+) \((\w+)\)", sf.stdout.readline())
            ports[m.group(2)] = int(m.group(1))
        if not wait_udp_bound(ip.pid, len(SERVICES), time.monotonic() + 5):
            print(json.dumps({"error": "inetd did not bind its UDP services"}))
            return
        print(json.dumps({"inetd": answers(SERVICES), "sockflow": answers(ports)}))
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


if __name__ == "__main__":
    main()
