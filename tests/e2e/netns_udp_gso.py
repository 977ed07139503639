"""Run inside a private network namespace (unshare --net): lo up with an MTU of 1500 and
`sockflow serve -u -l 0.0.0.0 --udp-rate 0 echo:0`. The server is stopped (SIGSTOP) while
a client queues a burst, so that one receive takes the whole burst and its replies to
the client form one group; the client has UDP_GRO on, so a group the server sent with
UDP_SEGMENT reaches it as one read with its segment size. Prints as JSON, for each burst
in turn, the reads as [length, segment size (0: a datagram alone), source address] and
whether every byte came back in order:
  big: 20 × 2000 bytes to 127.0.0.1 (a segment larger than the MTU allows: the kernel
       refuses the group, the replies go one by one);
  small: 20 × 1000 bytes to 127.0.0.2 (grouped, and from 127.0.0.2, the address asked);
  big_again: 20 × 2000 bytes to 127.0.0.1 (one by one, nothing more logged);
and the server's log. Starts the server and stops it by its pid.

usage: netns_udp_gso.py SOCKFLOW"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from netns_common import sh, stop

SOL_UDP, UDP_GRO = 17, 104
BURST = 20


def payload(i, size):
    return bytes((ord("a") + (i + j) % 26) for j in range(size))


def burst(pid, port, dst, size):
    """The burst's reads and whether the bytes all came back, in order."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(SOL_UDP, UDP_GRO, 1)
        s.bind(("127.0.0.1", 0))
        s.connect((dst, port))
        os.kill(pid, signal.SIGSTOP)
        try:
            for i in range(BURST):
                s.send(payload(i, size))
            time.sleep(0.05)
        finally:
            os.kill(pid, signal.SIGCONT)
        s.settimeout(2.0)
        reads, got = [], b""
        while len(got) < BURST * size:
            try:
                data, anc, _, peer = s.recvmsg(65536, socket.CMSG_SPACE(4))
            except socket.timeout:
                break
            seg = 0
            for level, kind, value in anc:
                if level == SOL_UDP and kind == UDP_GRO:
                    seg = int.from_bytes(value[:4], sys.byteorder)
            reads.append([len(data), seg, peer[0]])
            got += data
        want = b"".join(payload(i, size) for i in range(BURST))
        return {"reads": reads, "intact": got == want}


def main():
    sockflow = sys.argv[1]
    sh("ip", "link", "set", "lo", "mtu", "1500", "up")
    sf = subprocess.Popen([sockflow, "serve", "-u", "-4", "-l", "0.0.0.0", "--udp-rate", "0",
                           "echo:0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    try:
        port = int(re.search(r":(\d+) \(echo\)", sf.stdout.readline()).group(1))
        out["big"] = burst(sf.pid, port, "127.0.0.1", 2000)
        out["small"] = burst(sf.pid, port, "127.0.0.2", 1000)
        out["big_again"] = burst(sf.pid, port, "127.0.0.1", 2000)
    finally:
        out["log"] = stop(sf)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
