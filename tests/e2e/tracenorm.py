"""Normalising sockflow trace and demo output for golden files: times, ports, descriptors
and round-trip times vary from run to run; everything else must not."""
import re

ADDR = re.compile(r"(127\.0\.0\.1|\[::1\]|0\.0\.0\.0|\[::\]):\d+")
TIME = re.compile(r"^ *\d+\.\d{6} ")
CALL_FD = re.compile(r"^(T \S+ +(?:socket|accept4) +\S+ +.*?= )\d+")
NEW_FD = re.compile(r"(descriptor) \d+")
FD = re.compile(r"\bfd=\d+")
RTT = re.compile(r"\brtt=\d+us")
ROUND_TRIP = re.compile(r"round trip \d+ us")
SECONDS = re.compile(r"\b\d+\.\d+ s\b")
SPACES = re.compile(r"(?<=\S) {2,}")


def normalise_line(line):
    line = TIME.sub("T ", line)
    line = ADDR.sub(r"\1:P", line)
    line = FD.sub("fd=N", line)
    line = CALL_FD.sub(r"\1N", line)
    line = NEW_FD.sub(r"\1 N", line)
    line = RTT.sub("rtt=R", line)
    line = ROUND_TRIP.sub("round trip R us", line)
    line = SECONDS.sub("S s", line)
    return SPACES.sub(" ", line.rstrip())


def normalise(text):
    return "\n".join(normalise_line(l) for l in text.splitlines()) + "\n"


def tw_overflows():
    """TcpExt TCPTimeWaitOverflow: connections the kernel dropped instead of keeping in
    TIME_WAIT because its table was full (a busy machine). -1 when unknown."""
    try:
        lines = open("/proc/net/netstat").read().splitlines()
    except OSError:
        return -1
    for head, vals in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            return int(dict(zip(head.split(), vals.split())).get("TCPTimeWaitOverflow", -1))
    return -1
