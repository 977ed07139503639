"""Shared end-to-end harness: start the real sockflow binary on port 0, read the ports it
prints, talk to it, stop it by its pid. Every wait has a deadline."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOCKFLOW = os.environ.get("SOCKFLOW") or os.path.join(ROOT, "build", "rel", "sockflow")
EXAMPLES = os.environ.get("SOCKFLOW_EXAMPLES") or os.path.join(ROOT, "build", "rel", "examples")

LISTEN_RE = re.compile(r"listening on (tcp|udp) (\S+)")

# What AddressSanitizer, LeakSanitizer and UBSan print on stderr when they find something.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_report(text):
    """The first sanitizer finding in text (a process's stderr), or None."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        if mark in text:
            return mark
    return None


def assert_no_sanitizer_report(text, what="sockflow"):
    mark = sanitizer_report(text)
    if mark:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        raise AssertionError(f"{what}: sanitizer report ({mark}):\n{text}")


def split_addr(text):
    """'127.0.0.1:7' or '[::1]:7' -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Proc:
    """A process started by a test, its output collected by reader threads."""

    def __init__(self, argv, stdin=subprocess.DEVNULL, env=None, preexec_fn=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, preexec_fn=preexec_fn)
        self.pid = self.p.pid
        self.out_lines, self.err_lines = [], []
        self.cond = threading.Condition()
        self.readers = [threading.Thread(target=self._read, args=(self.p.stdout, self.out_lines), daemon=True),
                        threading.Thread(target=self._read, args=(self.p.stderr, self.err_lines), daemon=True)]
        for r in self.readers:
            r.start()

    def _read(self, f, lines):
        for raw in iter(f.readline, b""):
            with self.cond:
                lines.append(raw.decode("utf-8", "replace"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern, timeout=5.0, stream="out"):
        """The first line (stdout or stderr) matching pattern; fails at the deadline."""
        rx = re.compile(pattern)
        lines = self.out_lines if stream == "out" else self.err_lines
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in lines:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not any(r.is_alive() for r in self.readers)):
                    raise AssertionError(f"no line matching {pattern!r} from {self.argv}: "
                                         f"stdout={''.join(self.out_lines)!r} stderr={''.join(self.err_lines)!r}")
                self.cond.wait(min(left, 0.1))

    @property
    def stderr(self):
        with self.cond:
            return "".join(self.err_lines)

    @property
    def stdout(self):
        with self.cond:
            return "".join(self.out_lines)

    def alive(self):
        return self.p.poll() is None

    def signal(self, signo):
        if self.alive():
            os.kill(self.pid, signo)

    def wait(self, timeout=10.0):
        rc = self.p.wait(timeout=timeout)
        for r in self.readers:
            r.join(timeout=2)
        return rc

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL at the deadline. Returns the exit status."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
        return self.wait(timeout)

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Server(Proc):
    """`sockflow serve ...`, started and waited for until every listener is printed."""

    def __init__(self, args, binary=None, expect=None, **kw):
        super().__init__([binary or SOCKFLOW, "serve", *args], **kw)
        self.listeners = []      # (proto, host, port, service)
        want = expect if expect is not None else 1
        deadline = time.monotonic() + 10
        while True:
            with self.cond:
                found = [l for l in self.out_lines if LISTEN_RE.search(l)]
            if len(found) >= want and (expect is not None or self._settled(found)):
                break
            if time.monotonic() > deadline or not self.alive():
                raise AssertionError(f"sockflow serve {args} did not start: {self.stderr!r}")
            time.sleep(0.02)
        for line in found:
            m = LISTEN_RE.search(line)
            host, port = split_addr(m.group(2))
            svc = re.search(r"\((\w+)\)", line)
            self.listeners.append((m.group(1), host, port, svc.group(1) if svc else None))

    def _settled(self, found):
        # All listening lines are printed with one flush; wait briefly for the rest.
        time.sleep(0.05)
        with self.cond:
            return len([l for l in self.out_lines if LISTEN_RE.search(l)]) == len(found)

    def stop(self, timeout=10.0):
        """As Proc.stop; also fails if the sanitizers reported anything on stderr."""
        rc = super().stop(timeout)
        assert_no_sanitizer_report(self.stderr, f"sockflow serve (pid {self.pid})")
        return rc

    def port(self, proto="tcp", service=None, host=None):
        for p, h, port, s in self.listeners:
            if p == proto and (service is None or s == service) and (host is None or h == host):
                return port
        raise AssertionError(f"no {proto} listener for {service or 'any service'} in {self.listeners}")


def run_sockflow(args, input=b"", timeout=20, binary=None, **kw):
    """Run sockflow to completion; returns CompletedProcess with bytes output.
    Fails if the sanitizers reported anything on stderr."""
    if "stdin" in kw:
        input = None
    r = subprocess.run([binary or SOCKFLOW, *args], input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, **kw)
    assert_no_sanitizer_report(r.stderr, f"sockflow {' '.join(map(str, args))}")
    return r


def have_ipv6_loopback():
    """Whether ::1 can be bound here (IPv6 may be off in a container)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(proto="tcp", host="127.0.0.1"):
    """A port the kernel says is free now (bound to port 0, then closed), for peer tools
    that cannot listen on port 0 and print the port (nc -l, socat)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(fam, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _proc_net_entries(proto):
    """(local host hex, local port, state hex, inode) from /proc/net/{tcp,udp}{,6}."""
    out = []
    for name in (proto, proto + "6"):
        try:
            with open(f"/proc/net/{name}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    host, port = cols[1].split(":")
                    out.append((name, host, int(port, 16), cols[3], int(cols[9])))
        except FileNotFoundError:
            pass
    return out


def proc_net_sockets(proto, port, state=None):
    """Sockets in /proc/net/PROTO{,6} with this local port: [(table, hex host, state, inode)].
    state: '0A' LISTEN, '01' ESTABLISHED, '07' UDP unconnected; None for all."""
    return [(t, h, st, ino) for t, h, p, st, ino in _proc_net_entries(proto)
            if p == port and (state is None or st == state)]


def wait_listening(port, proto="tcp", timeout=5.0):
    """Wait until something listens on (or, UDP, is bound to) port; a peer such as
    `nc -l` accepts one client only, so a probe connection would use it up."""
    state = "0A" if proto == "tcp" else "07"
    deadline = time.monotonic() + timeout
    while not proc_net_sockets(proto, port, state):
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listening on {proto} port {port} after {timeout}s")
        time.sleep(0.02)


def tcp_exchange(port, data, host="127.0.0.1", timeout=10.0, half_close=True):
    """Connect, send data, half-close, read to EOF. Returns the bytes received."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        got = bytearray()
        sender = threading.Thread(target=lambda: (s.sendall(data), half_close and s.shutdown(socket.SHUT_WR)))
        sender.start()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        sender.join(timeout)
        return bytes(got)


def udp_exchange(port, data, host="127.0.0.1", timeout=2.0, bind=None):
    """Send one datagram, return the reply or None on timeout."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        if bind is not None:
            s.bind(bind)
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        try:
            return s.recvfrom(70000)[0]
        except socket.timeout:
            return None


@pytest.fixture
def serve():
    """Factory: serve('echo:0', '-t') starts a server; all are stopped at teardown."""
    started = []

    def start(*args, **kw):
        s = Server(list(args), **kw)
        started.append(s)
        return s

    yield start
    failures = []
    for s in started:
        try:
            s.stop()
        except AssertionError as e:
            failures.append(e)
    if failures:
        raise failures[0]


@pytest.fixture
def procs():
    """Factory for other processes (nc, socat, examples); all stopped by pid at teardown."""
    started = []

    def start(argv, **kw):
        p = Proc(argv, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop(timeout=5)
