"""chat: lines relayed to every other member, prefixed once per line; joins, leaves and
renames announced; long lines refused; a member that never reads is dropped alone."""
import re
import socket
import threading
import time

import pytest

from svc_helpers import connect


class Member:
    def __init__(self, port, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(10)
        self.s.connect(("127.0.0.1", port))
        self.buf = b""
        hello = self.line()
        m = re.match(rb"\* you are (\S+), \d+ others? here; /nick NAME to rename\n$", hello)
        assert m, hello
        self.name = m.group(1).decode()

    def line(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def expect_nothing(self, wait=0.3):
        self.s.settimeout(wait)
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            chunk = b""
        assert self.buf + chunk == b"", self.buf + chunk

    def send(self, data):
        self.s.sendall(data)

    def close(self):
        self.s.close()


@pytest.fixture
def chat(serve):
    return serve("-4", "chat:0").port("tcp", "chat")


def _join(port, n):
    members = []
    for _ in range(n):
        m = Member(port)
        for old in members:
            assert old.line() == f"* {m.name} joined\n".encode()
        members.append(m)
    return members


def test_three_members_multi_line_write(chat):
    a, b, c = _join(chat, 3)
    a.send(b"one\ntwo\nthree\n")
    for m in (b, c):
        assert [m.line() for _ in range(3)] == [f"<{a.name}> {w}\n".encode()
                                              for w in ("one", "two", "three")]
    a.expect_nothing()


def test_line_split_over_writes_is_one_line(chat):
    a, b = _join(chat, 2)
    a.send(b"hel")
    time.sleep(0.1)
    a.send(b"lo wor")
    time.sleep(0.1)
    a.send(b"ld\r\nnext\n")
    assert b.line() == f"<{a.name}> hello world\r\n".encode()
    assert b.line() == f"<{a.name}> next\n".encode()


def test_nick_and_leave_announced(chat):
    a, b, c = _join(chat, 3)
    old = a.name
    a.send(b"/nick alice\n")
    assert a.line() == b"* you are now alice\n"
    for m in (b, c):
        assert m.line() == f"* {old} is now alice\n".encode()
    a.send(b"hi\n")
    assert b.line() == b"<alice> hi\n" and c.line() == b"<alice> hi\n"
    b.send(b"/nick alice\n")
    assert b.line() == b"* error: alice is taken\n"
    b.send(b"/nick two words\n")
    assert b.line().startswith(b"* error: a name is")
    a.close()
    assert b.line() == b"* alice left\n" and c.line() == b"* alice left\n"


def test_last_line_without_newline_is_relayed_on_close(chat):
    a, b = _join(chat, 2)
    a.send(b"bye")
    a.s.shutdown(socket.SHUT_WR)
    assert b.line() == f"<{a.name}> bye\n".encode()
    assert b.line() == f"* {a.name} left\n".encode()


def test_long_line_gets_an_error_and_is_never_relayed(chat):
    a, b, c = _join(chat, 3)
    a.send(b"x" * 4096 + b"\n")      # the longest line allowed
    assert b.line() == f"<{a.name}> ".encode() + b"x" * 4096 + b"\n"
    assert c.line() == f"<{a.name}> ".encode() + b"x" * 4096 + b"\n"
    sender = threading.Thread(target=lambda: a.send(b"y" * (1 << 20)))
    sender.start()
    assert a.line() == b"* error: line longer than 4096 bytes; closing\n"
    sender.join(10)
    a.s.settimeout(10)
    assert a.s.recv(100) == b""          # then FIN
    for m in (b, c):
        assert m.line() == f"* {a.name} left\n".encode()
        m.expect_nothing()


def test_member_that_never_reads_is_dropped_and_others_lose_nothing(serve):
    srv = serve("-4", "--queue-cap", "64k", "chat:0")
    port = srv.port("tcp", "chat")
    talker, b, c = _join(port, 3)
    slow = Member(port, rcvbuf=4096)
    for m in (talker, b, c):
        assert m.line() == f"* {slow.name} joined\n".encode()
    lines = [b"line %06d " % i + b"z" * 90 + b"\n" for i in range(40000)]   # ~4 MiB
    got = {b: [], c: []}
    left = {b: [], c: []}

    def read_all(m):
        prefix = f"<{talker.name}> ".encode()
        while len(got[m]) < len(lines):
            line = m.line(timeout=20)
            if line.startswith(prefix):
                got[m].append(line[len(prefix):])
            else:
                left[m].append(line)

    readers = [threading.Thread(target=read_all, args=(m,)) for m in (b, c)]
    for t in readers:
        t.start()
    for i in range(0, len(lines), 400):
        talker.send(b"".join(lines[i:i + 400]))
    for t in readers:
        t.join(60)
    assert got[b] == lines and got[c] == lines
    srv.wait_line(r"not reading: dropped at the queue cap", stream="err", timeout=10)
    for m in (b, c):
        if not left[m]:
            left[m].append(m.line())
        assert left[m] == [f"* {slow.name} left\n".encode()]
    assert talker.line() == f"* {slow.name} left\n".encode()
