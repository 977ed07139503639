"""Helpers for the `sockflow listen` tests: start it, read the address from its
'listening on' line (on standard error: standard output carries the client's bytes),
talk to it, stop it by pid. Every wait has a deadline."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SOCKFLOW, assert_no_sanitizer_report

LISTENING_RE = re.compile(r"listening on (tcp|udp|unix-stream|unix-dgram) (\S+)")


class Listener:
    """`sockflow listen ARGS`: stdin is a file object, bytes (a pipe fed in a thread)
    or None (a pipe left open for the test to write). Its standard output collected
    whole, its standard error line by line."""

    def __init__(self, args, stdin=subprocess.DEVNULL, env=None, argv0=None, preexec_fn=None):
        self.argv = (argv0 or [SOCKFLOW, "listen"]) + list(args)
        feed = None
        if isinstance(stdin, bytes):
            feed, stdin = stdin, subprocess.PIPE
        elif stdin is None:
            stdin = subprocess.PIPE
        self.p = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, preexec_fn=preexec_fn)
        self.pid = self.p.pid
        self.out = bytearray()
        self.err_lines = []
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._read_out, daemon=True),
                        threading.Thread(target=self._read_err, daemon=True)]
        if feed is not None:
            self.threads.append(threading.Thread(target=self._feed, args=(feed,), daemon=True))
        for t in self.threads:
            t.start()
        self.kind = self.addr = None
        self.port = None

    def _feed(self, data):
        try:
            self.p.stdin.write(data)
            self.p.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    def _read_out(self):
        for chunk in iter(lambda: self.p.stdout.read1(65536), b""):
            with self.cond:
                self.out += chunk
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_err(self):
        for raw in iter(self.p.stderr.readline, b""):
            with self.cond:
                self.err_lines.append(raw.decode("utf-8", "replace"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def started(self, timeout=10.0):
        """Wait for the 'listening on' line; sets kind, addr and port. Returns self."""
        line = self.wait_err(LISTENING_RE.pattern, timeout)
        m = LISTENING_RE.search(line)
        self.kind, self.addr = m.group(1), m.group(2)
        if self.kind in ("tcp", "udp"):
            self.port = int(self.addr.rpartition(":")[2])
        return self

    def wait_err(self, pattern, timeout=5.0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.err_lines:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self.threads[1].is_alive()):
                    raise AssertionError(f"no stderr line matching {pattern!r} from {self.argv}: "
                                         f"stderr={self.stderr!r} stdout={bytes(self.out)!r}")
                self.cond.wait(min(left, 0.1))

    def wait_out(self, n, timeout=10.0):
        """Wait until at least n bytes came out; returns them all."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.out) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.out)} of {n} bytes from {self.argv}; "
                                         f"stderr={self.stderr!r}")
                self.cond.wait(min(left, 0.1))
            return bytes(self.out)

    @property
    def stderr(self):
        with self.cond:
            return "".join(self.err_lines)

    @property
    def stdout(self):
        with self.cond:
            return bytes(self.out)

    def alive(self):
        return self.p.poll() is None

    def wait(self, timeout=10.0):
        rc = self.p.wait(timeout=timeout)
        for t in self.threads:
            t.join(timeout=2)
        assert_no_sanitizer_report(self.stderr, f"sockflow listen (pid {self.pid})")
        return rc

    def signal(self, signo):
        if self.alive():
            os.kill(self.pid, signo)

    def stop(self, timeout=10.0):
        """SIGINT (at once), then SIGKILL at the deadline. Returns the exit status."""
        if self.alive():
            os.kill(self.pid, signal.SIGINT)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            return self.p.wait(5)

    def children(self):
        """Pids of this process's children (from /proc)."""
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []


def child_states(pid):
    """{child pid: state letter} of pid's children ('Z' for a zombie)."""
    out = {}
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return out
    for k in kids:
        try:
            with open(f"/proc/{k}/stat") as f:
                out[k] = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            pass
    return out


def exchange(addr, data, family=socket.AF_INET, timeout=10.0, source=None, kind=socket.SOCK_STREAM):
    """Connect (from source if given), send data, half-close, read to EOF."""
    with socket.socket(family, kind) as s:
        s.settimeout(timeout)
        if source is not None:
            s.bind(source)
        s.connect(addr)
        got = bytearray()
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        sender.start()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        sender.join(timeout)
        return bytes(got)


def closed_at_once(port, source, timeout=3.0, host="127.0.0.1"):
    """Whether a connection from source is closed by the server without a byte (EOF or
    reset) while we keep our side open: a refusal after accept."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.bind(source)
        s.connect((host, port))
        try:
            return s.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def fill_until_blocked(sock, byte=b"x", secs=5):
    """Write to sock (made nonblocking) until the kernel takes no more, or secs pass: a
    peer that never reads. Returns the bytes written."""
    sock.setblocking(False)
    sent, deadline = 0, time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            sent += sock.send(byte * 65536)
        except BlockingIOError:
            break
    return sent


def run_to_end(argv, input=b"", timeout=20):
    r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return r


# The fixture the listen tests share: start(*args) runs `sockflow listen ARGS`; every
# listener started is stopped by its pid at the end.
@pytest.fixture
def listen():
    started = []

    def start(*args, **kw):
        lst = Listener(list(args), **kw)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.stop(timeout=5)
