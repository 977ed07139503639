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
# the 80-column layout of the demo: call(fd, ...) = N
NARROW_FD = re.compile(r"\b([a-z][a-z0-9_-]*)\(\d+\b")
NARROW_NEW_FD = re.compile(r"^(T \S+ +(?:socket|accept4)\(.*\) = )\d+")
PORT_WORD = re.compile(r"\b(port|ports|端口) \d+( and | 和 |, then |，然后是 )?(\d+)?")
DELTA = re.compile(r"([A-Za-z]+) \+\d+")
EPHEMERAL = re.compile(r"(?<![\d.:=])\b\d{5}\b")
SECONDS_ZH = re.compile(r"\d+\.\d+ 秒")
# the ladder's rows (ms since its first event) and the initial sequence numbers J and K
LADDER_TIME = re.compile(r"^ *\d+\.\d{3} ")
ISN = re.compile(r"\b([JK])=\d+")
ISN_ZH = re.compile(r"([JK])=\d+")


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


def unwrap(text):
    """The demo wraps at 80 columns, where the breaks depend on the width of ports and
    times: a line indented by 5 or more spaces continues the one before it."""
    out = []
    for line in text.splitlines():
        if out and out[-1].strip() and re.match(r"^ {5,}\S", line):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def normalise_narrow_line(line):
    line = normalise_line(line)
    line = NARROW_FD.sub(r"\1(N", line)
    line = NARROW_NEW_FD.sub(r"\1N", line)
    line = PORT_WORD.sub(lambda m: m.group(1) + " P" + (m.group(2) + "P" if m.group(3) else
                                                        (m.group(2) or "")), line)
    line = DELTA.sub(r"\1 +D", line)
    line = SECONDS_ZH.sub("S 秒", line)
    line = LADDER_TIME.sub("T ", line)
    line = ISN_ZH.sub(r"\1=N", ISN.sub(r"\1=N", line))
    return EPHEMERAL.sub("P", line)


def ladder_rows_sorted(lines):
    """A ladder's rows are in the order the calls returned and the segments were seen. Two
    threads' returns a few microseconds apart (the client's sendto and the server's
    recvfrom) come in either order on a busy machine, so a golden compares the rows of
    each ladder as a set; their order is checked where it is not a race (the demo's own
    seen: checks, tests/e2e/test_wire_cmd.py, the ladder's unit tests)."""
    out, block = [], None
    for line in lines:
        if block is not None and line.startswith("T "):
            block.append(line)
            if "'#': inside a call" in line:
                out += sorted(block)
                block = None
            continue
        if block is not None:
            out += sorted(block)
            block = None
        out.append(line)
        if "ms client | | server" in line:
            block = []
    return out + sorted(block or [])


def normalise(text, narrow=False):
    """Times, ports, descriptors, round trips as letters; narrow: the demo's 80-column
    layout, unwrapped first, each ladder's rows as a set."""
    if narrow:
        lines = [normalise_narrow_line(l) for l in unwrap(text).splitlines()]
        return "\n".join(ladder_rows_sorted(lines)) + "\n"
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
