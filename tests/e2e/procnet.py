"""What /proc says about a process started by a test: its CPU time, its descriptors and
their flags, its sockets and their local addresses. Linux only, like sockflow."""
import os
import socket
import struct
import time

O_NONBLOCK = 0o4000
O_CLOEXEC = 0o2000000

TCP_LISTEN = 0x0A
TCP_ESTABLISHED = 0x01


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_run_ns(pid):
    """{tid: nanoseconds on a CPU so far} from schedstat, one entry per thread."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return out


def fd_flags(pid, fd):
    """The open-file flags of pid's fd, from /proc/PID/fdinfo (octal 'flags:' line)."""
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError(f"no flags line in /proc/{pid}/fdinfo/{fd}")


def fd_targets(pid):
    """{fd: link target} of every descriptor pid holds."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            pass    # closed while we looked
    return out


def socket_fds(pid):
    """{inode: fd} of pid's sockets."""
    out = {}
    for fd, target in fd_targets(pid).items():
        if target.startswith("socket:["):
            out[int(target[8:-1])] = fd
    return out


def _addr(hexaddr, family):
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if family == socket.AF_INET:
        raw = raw[::-1]
    else:   # four host-order 32-bit words
        raw = b"".join(struct.pack(">I", w) for w in struct.unpack("<4I", raw))
    return socket.inet_ntop(family, raw), int(port, 16)


def proc_sockets(pid, proto):
    """[(fd, family, local host, local port, state)] of pid's proto ('tcp'/'udp') sockets,
    read from /proc/net/{proto,proto6} and matched to the process by inode."""
    mine = socket_fds(pid)
    out = []
    for suffix, family in (("", socket.AF_INET), ("6", socket.AF_INET6)):
        try:
            with open(f"/proc/{pid}/net/{proto}{suffix}") as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            cols = line.split()
            inode = int(cols[9])
            if inode in mine:
                host, port = _addr(cols[1], family)
                out.append((mine[inode], family, host, port, int(cols[3], 16)))
    return out


def wait_until(pred, timeout, step=0.01):
    """Poll pred() until it is true or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)
