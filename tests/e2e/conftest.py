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

    def port(self, proto="tcp", service=None, host=None):
        for p, h, port, s in self.listeners:
            if p == proto and (service is None or s == service) and (host is None or h == host):
                return port
        raise AssertionError(f"no {proto} listener for {service or 'any service'} in {self.listeners}")


def run_sockflow(args, input=b"", timeout=20, binary=None, **kw):
    """Run sockflow to completion; returns CompletedProcess with bytes output."""
    return subprocess.run([binary or SOCKFLOW, *args], input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, **kw)


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
    for s in started:
        s.stop()


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
