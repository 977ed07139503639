"""Run inside a private network namespace (unshare --net): a veth pair whose end v0 has
two IPv4 addresses added without a broadcast address (`ip addr add A/16 dev v0`, as in
containers and clouds) and two IPv6 ones; `sockflow serve -u` on the wildcard addresses.
Prints as JSON what a client gets back:
  host_no_brd: a datagram to the host's own address (no `brd`) from an ordinary port;
  second_v4 / second_v6: a *connected* client asking the second address, which only
  accepts a reply from that address.
Starts the server and stops it by its pid.

usage: netns_udp_hosts.py SOCKFLOW"""
import json
import re
import socket
import subprocess
import sys

from netns_common import sh, stop

V4 = ["10.9.0.1", "10.9.0.2"]
V6 = ["fd00:9::1", "fd00:9::2"]


def ask(fam, src, dst, port, connected, timeout=1.0):
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        s.settimeout(timeout)
        if connected:
            s.connect((dst, port))
            s.send(b"which address?")
        else:
            s.sendto(b"which address?", (dst, port))
        try:
            data, peer = s.recvfrom(100)
            return {"reply": data.decode(), "from": peer[0]}
        except socket.timeout:
            return None


def main():
    sockflow = sys.argv[1]
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    for a in V4:
        sh("ip", "addr", "add", f"{a}/16", "dev", "v0")
    for a in V6:
        sh("ip", "addr", "add", f"{a}/64", "dev", "v0", "nodad")
    sh("ip", "link", "set", "v0", "up")
    sh("ip", "link", "set", "v1", "up")
    sf = subprocess.Popen([sockflow, "serve", "-u", "-l", "0.0.0.0", "-l", "::", "-q",
                           "echo:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    try:
        ports = [int(re.search(r":(\d+) \(echo\)", sf.stdout.readline()).group(1))
                 for _ in range(2)]
        port = ports[0]
        out = {
            "host_no_brd": ask(socket.AF_INET, V4[0], V4[0], port, connected=False),
            "second_v4": ask(socket.AF_INET, V4[0], V4[1], port, connected=True),
            "second_v6": ask(socket.AF_INET6, V6[0], V6[1], port, connected=True),
        }
        print(json.dumps(out))
    finally:
        stop(sf)


if __name__ == "__main__":
    main()
