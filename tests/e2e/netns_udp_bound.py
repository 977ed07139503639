"""Run inside a private network namespace (unshare --net): a veth end v0 with 10.8.0.1/16
and its broadcast address 10.8.255.255 (`brd +`); `sockflow serve -u` bound to each of the
two addresses, not to the wildcard, so the server knows every datagram's destination from
the socket it came to rather than from IP_PKTINFO. Prints as JSON what a client on
10.8.0.1 gets back:
  unicast: a datagram to 10.8.0.1 (answered);
  broadcast: one to 10.8.255.255 with SO_BROADCAST (fraggle: never answered).
Starts the server and stops it by its pid.

usage: netns_udp_bound.py SOCKFLOW LOOPS"""
import json
import re
import socket
import subprocess
import sys

from netns_common import sh, stop

HOST, BCAST = "10.8.0.1", "10.8.255.255"


def ask(dst, port, timeout=1.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.bind((HOST, 0))
        s.settimeout(timeout)
        s.sendto(b"who is there?", (dst, port))
        try:
            data, peer = s.recvfrom(100)
            return {"reply": data.decode(), "from": peer[0]}
        except socket.timeout:
            return None


def main():
    sockflow, loops = sys.argv[1], sys.argv[2]
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    sh("ip", "addr", "add", f"{HOST}/16", "brd", "+", "dev", "v0")
    sh("ip", "link", "set", "v0", "up")
    sh("ip", "link", "set", "v1", "up")
    sf = subprocess.Popen([sockflow, "serve", "-u", "-j", loops, "-l", HOST, "-l", BCAST,
                           "echo:0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    try:
        ports = [int(re.search(r":(\d+) \(echo\)", sf.stdout.readline()).group(1))
                 for _ in range(2)]
        out.update(unicast=ask(HOST, ports[0]), broadcast=ask(BCAST, ports[0]))
    finally:
        out["log"] = stop(sf)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
