"""chat: lines relayed to every other member, prefixed once per line, terminal controls
shown and not obeyed; members numbered per room, automatic names never taken by /nick;
joins, leaves and renames announced; long lines refused; a member that never reads is
dropped alone; a line must end within the idle timeout; a member who only listens stays,
one who vanished is found and announced."""
import contextlib
import ctypes
import os
import re
import selectors
import shutil
import socket
import subprocess
import threading
import time

import pytest

from checked import procs, serve  # noqa: F401 (fixtures)
from conftest import LISTEN_RE, SOCKFLOW, split_addr
from svc_helpers import connect


class Member:
    def __init__(self, port, rcvbuf=None, host="127.0.0.1", nodelay=False):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if nodelay:
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.settimeout(10)
        self.s.connect((host, port))
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


def _server_read(srv, member, n):
    """Wait until the server's trace shows one read() of n bytes from member: the bytes
    sent so far arrived as a read of their own, not joined to the next write."""
    port = member.s.getsockname()[1]
    srv.wait_line(rf'"call":"read",.*"result":{n},.*"peer":"127\.0\.0\.1:{port}"',
                  stream="err")


def test_line_split_over_writes_is_one_line(serve):
    srv = serve("-4", "--trace=json", "chat:0")
    port = srv.port("tcp", "chat")
    a = Member(port, nodelay=True)
    b = Member(port)
    assert a.line() == f"* {b.name} joined\n".encode()
    a.send(b"hel")
    _server_read(srv, a, 3)
    b.expect_nothing()          # the server holds the unfinished line
    a.send(b"lo wor")
    _server_read(srv, a, 6)
    b.expect_nothing()
    a.send(b"ld\r\nnext\n")
    assert b.line() == f"<{a.name}> hello world\r\n".encode()
    assert b.line() == f"<{a.name}> next\n".encode()


def test_terminal_controls_are_shown_not_obeyed(chat):
    a, b = _join(chat, 2)
    p = f"<{a.name}> ".encode()
    a.send(b"hi \x1b[2K\r<user9> forged\n")
    assert b.line() == p + b"hi ^[[2K^M<user9> forged\n"
    a.send(b"\x1b]0;title\x07\x1b[2J\x7f\x00\x08\ttab\r\n")
    assert b.line() == p + b"^[]0;title^G^[[2J^?^@^H\ttab\r\n"
    # C1 controls: CSI as UTF-8 (U+009B) and as a lone byte; other UTF-8 and Latin-1 pass.
    a.send("\u009b31m \u20ac ".encode() + b"\x9b2J caf\xe9\n")
    assert b.line() == p + "\\u009b31m \u20ac ".encode() + b"\\x9b2J caf\xe9\n"
    a.expect_nothing()


def test_names_are_numbered_per_room_and_never_taken_by_nick(serve):
    srv = serve("-4", "-t", "echo:0", "chat:0")
    chat = srv.port("tcp", "chat")
    # Clients of another service in the same server take no number of the room.
    others = [connect(srv.port("tcp", "echo")) for _ in range(3)]
    for o in others:
        o.sendall(b"x")
        assert o.recv(1) == b"x"        # accepted, so numbered first by the server
    a, b, c = _join(chat, 3)
    assert [m.name for m in (a, b, c)] == ["user1", "user2", "user3"]
    for o in others:
        o.close()
    # Not a name handed out already, nor one to come, in any letter case.
    for name in (b"user3", b"user4", b"USER9", b"User12", b"user007"):
        a.send(b"/nick " + name + b"\n")
        assert a.line() == b"* error: user1, user2, ... are handed out automatically\n"
    a.send(b"/nick Alice\n")
    assert a.line() == b"* you are now Alice\n"
    for m in (b, c):
        assert m.line() == b"* user1 is now Alice\n"
    b.send(b"/nick alice\n")
    assert b.line() == b"* error: alice is taken\n"
    b.send(b"/nick user2\n")
    assert b.line() == b"* you are user2 already\n"
    b.close()
    for m in (a, c):
        assert m.line() == b"* user2 left\n"
    d = Member(chat)
    assert d.name == "user4"        # a number is never given twice in a room
    for m in (a, c):
        assert m.line() == b"* user4 joined\n"


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


def test_a_name_with_commas_is_its_own_name(chat):
    # Commas are printable: "x/n,,,," is a name apart from "x/n", in the room together.
    a, b, c = _join(chat, 3)
    a.send(b"/nick x/n,,,,\n")
    assert a.line() == b"* you are now x/n,,,,\n"
    for m in (b, c):
        assert m.line() == f"* {a.name} is now x/n,,,,\n".encode()
    a.send(b"/nick x/n,,,,\n")
    assert a.line() == b"* you are x/n,,,, already\n"
    b.send(b"/nick X/N\n")
    assert b.line() == b"* you are now X/N\n"
    for m in (a, c):
        assert m.line() == f"* {b.name} is now X/N\n".encode()
    b.send(b"/nick x/n,,,,\n")
    assert b.line() == b"* error: x/n,,,, is taken\n"
    c.send(b"/nick x/N\n")
    assert c.line() == b"* error: x/N is taken\n"
    a.send(b"hi\n")
    assert b.line() == b"<x/n,,,,> hi\n" and c.line() == b"<x/n,,,,> hi\n"


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


# ---- idle members, unfinished lines, vanished members ----

def test_member_who_only_listens_is_not_closed_as_idle(serve):
    srv = serve("-4", "--idle-timeout", "2", "chat:0")
    a, b = _join(srv.port("tcp", "chat"), 2)
    time.sleep(6)       # three idle timeouts in a quiet room: nobody says a word
    a.send(b"still here\n")
    assert b.line() == f"<{a.name}> still here\n".encode()
    b.send(b"me too\n")
    assert a.line() == f"<{b.name}> me too\n".encode()
    assert "idle timeout" not in srv.stderr


def _talk_while_trickling(trick, talker, seconds):
    """Each of trick sends one byte every 0.5 s, never a newline; talker says a line
    every 0.25 s. Returns (first byte time, closed time) per trickler and the lines."""
    sel = selectors.DefaultSelector()
    for i, t in enumerate(trick):
        t.setblocking(False)
        sel.register(t, selectors.EVENT_READ, i)
    first, closed, sent = {}, {}, []
    start = time.monotonic()
    next_byte = next_line = start
    while len(closed) < len(trick) and time.monotonic() < start + seconds:
        now = time.monotonic()
        if now >= next_byte:
            for i, t in enumerate(trick):
                if i in closed:
                    continue
                try:
                    t.send(b"x")
                    first.setdefault(i, now)
                except OSError:
                    closed[i] = now
                    sel.unregister(t)
            next_byte = now + 0.5
        if now >= next_line:
            sent.append(b"line %d\n" % len(sent))
            talker.send(sent[-1])
            next_line = now + 0.25
        for key, _ in sel.select(timeout=0.05):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data and key.data not in closed:
                closed[key.data] = time.monotonic()
                sel.unregister(key.fileobj)
    return first, closed, sent


def test_unfinished_lines_are_closed_within_the_idle_timeout(serve):
    idle = 2.0
    srv = serve("-4", "--idle-timeout", str(idle), "chat:0")
    port = srv.port("tcp", "chat")
    talker, listener = _join(port, 2)
    trick = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(60)]
    for t in trick:
        t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    first, closed, sent = _talk_while_trickling(trick, talker, 4 * idle)
    assert len(closed) == len(trick), f"{len(trick) - len(closed)} tricklers still open"
    late = sorted(closed[i] - first[i] for i in closed)
    print(f"60 tricklers closed {late[0]:.2f}-{late[-1]:.2f} s after their first byte")
    assert late[0] >= idle - 0.01, "closed before its line was due"
    assert late[-1] < idle * 1.25 + 1.5       # the sweep runs every quarter timeout
    srv.wait_line(r"idle timeout: input begun and not completed", stream="err")
    # The talker was served throughout: every line reached the listener, in order.
    prefix = f"<{talker.name}> ".encode()
    got = []
    while len(got) < len(sent):
        line = listener.line()
        if line.startswith(prefix):
            got.append(line[len(prefix):])
    assert got == sent
    for t in trick:
        t.close()


CLONE_NEWNET = 0x40000000


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Netns:
    """A private network namespace, held by a process of its own (stopped by pid)."""

    def __init__(self):
        self.p = subprocess.Popen(["unshare", "--net", "sleep", "120"])
        self.path = f"/proc/{self.p.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(self.path) == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline and self.p.poll() is None, "unshare --net failed"
            time.sleep(0.01)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *argv):
        subprocess.run(["nsenter", f"--net={self.path}", *argv], check=True, timeout=10,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    @contextlib.contextmanager
    def entered(self):
        """Sockets made inside the block belong to this namespace (this thread only)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(self.path, os.O_RDONLY)
        try:
            _setns(there)
            yield
        finally:
            _setns(home)
            os.close(home)
            os.close(there)

    def stop(self):
        self.p.kill()
        self.p.wait(5)


@pytest.fixture
def vanishing(procs):
    """A server in one namespace, listening on 0.0.0.0; a second namespace joined to it by
    a veth pair (10.77.0.1 there, 10.77.0.2 here). Yields (start server, server ns, the
    far ns, take the far side's link down): what is behind that link then vanishes without
    a FIN or a reset, as a machine that lost power or its network."""
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and a veth pair")
    if not all(shutil.which(t) for t in ("unshare", "nsenter", "ip")):
        pytest.skip("unshare, nsenter or ip missing")
    near, far = Netns(), Netns()
    try:
        near.run("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb",
                 "netns", str(far.p.pid))
        near.run("ip", "addr", "add", "10.77.0.1/24", "dev", "va")
        near.run("ip", "link", "set", "va", "up")
        far.run("ip", "addr", "add", "10.77.0.2/24", "dev", "vb")
        far.run("ip", "link", "set", "vb", "up")

        def start(*args):
            p = procs(["nsenter", f"--net={near.path}", SOCKFLOW, "serve", "-4", "-l",
                       "0.0.0.0", *args, "chat:0"])
            return p, split_addr(LISTEN_RE.search(p.wait_line(r"listening on tcp")).group(2))[1]

        yield start, near, far, lambda: far.run("ip", "link", "set", "vb", "down")
    finally:
        near.stop()
        far.stop()


def _gone_within(members, name, seconds):
    """Seconds until every one of members heard that name left; fails past seconds."""
    start = time.monotonic()
    for m in members:
        while True:
            line = m.line(timeout=max(0.01, start + seconds - time.monotonic()))
            if line == f"* {name} left\n".encode():
                break
    return time.monotonic() - start


def test_vanished_member_of_a_busy_room_is_announced(vanishing):
    start, near, far, vanish = vanishing
    srv, port = start("--send-timeout", "2")
    with near.entered():
        talker, witness = _join(port, 2)
    with far.entered():
        gone = Member(port, host="10.77.0.1")
    for m in (talker, witness):
        assert m.line() == f"* {gone.name} joined\n".encode()
    vanish()
    stop = threading.Event()

    def talk():
        # A busy room: what goes to the vanished member lands in the server's kernel
        # buffer, which looks like progress and never fills in the time of this test.
        while not stop.is_set():
            talker.send(b"busy\n")
            stop.wait(0.2)

    t = threading.Thread(target=talk)
    t.start()
    try:
        took = _gone_within([witness], gone.name, 10)
    finally:
        stop.set()
        t.join(5)
    print(f"vanished member of a busy room announced {took:.2f} s after its link went down")
    assert took < 2 + 2.5
    srv.wait_line(r"closed: .*timed out", stream="err")


def test_vanished_member_of_a_quiet_room_is_found_and_listeners_stay(vanishing):
    start, near, far, vanish = vanishing
    srv, port = start("--idle-timeout", "3", "--send-timeout", "30")
    with near.entered():
        a, b = _join(port, 2)
    with far.entered():
        gone = Member(port, host="10.77.0.1")
    for m in (a, b):
        assert m.line() == f"* {gone.name} joined\n".encode()
    vanish()
    took = _gone_within([a, b], gone.name, 10)
    print(f"vanished member of a quiet room announced {took:.2f} s after its link went down")
    assert took < 3 * 1.25 + 1.5
    srv.wait_line(r"closed: idle timeout: the peer stopped answering", stream="err")
    time.sleep(6)       # the two who only listen are there, quiet, for two more timeouts
    a.send(b"still here\n")
    assert b.line() == f"<{a.name}> still here\n".encode()
