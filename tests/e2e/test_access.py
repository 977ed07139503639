"""Who may connect, and as whom we run: --allow/--deny (IPv4 and IPv6 prefixes, deny
wins, rule files) on listen and serve, from several 127.0.0.x sources; serve's UDP drop;
--max-conns-per-source; --user after binding a port below 1024; SIGHUP drains serve."""
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import SOCKFLOW, have_ipv6_loopback
from listen_helpers import closed_at_once, exchange, listen, run_to_end  # noqa: F401 (listen: a fixture)

needs_ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback (::1)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to bind below 1024 "
                                                           "and drop privileges)")



def served_from(port, source):
    """The program (rev) answers a client from source."""
    return exchange(("127.0.0.1", port), b"ab\n", source=(source, 0), timeout=5) == b"ba\n"


def test_listen_allow_prefix_and_deny_wins(listen):
    lst = listen("-k", "--allow", "127.0.0.0/30", "--deny", "127.0.0.2", "-e", "rev",
                 "0").started()
    assert served_from(lst.port, "127.0.0.1")
    assert served_from(lst.port, "127.0.0.3")
    assert closed_at_once(lst.port, ("127.0.0.2", 0))       # allowed, but denied: deny wins
    assert closed_at_once(lst.port, ("127.0.0.4", 0))       # outside every allow
    lst.wait_err(r"refused 127\.0\.0\.2:\d+ \(not allowed\)")
    assert lst.alive()
    assert served_from(lst.port, "127.0.0.1")


def test_listen_refusals_logged_at_most_once_a_second(listen):
    lst = listen("-k", "--deny", "127.0.0.9", "-e", "cat", "0").started()
    for _ in range(20):
        assert closed_at_once(lst.port, ("127.0.0.9", 0))
    time.sleep(0.2)
    lines = [l for l in lst.err_lines if "refused" in l]
    assert 1 <= len(lines) <= 2, lines


def test_listen_allowfile_and_denyfile(listen, tmp_path):
    allow = tmp_path / "allow"
    allow.write_text("# ours\n127.0.0.5\n127.0.0.6/32  # and this one\n")
    deny = tmp_path / "deny"
    deny.write_text("127.0.0.6\n")
    lst = listen("-k", "--allowfile", str(allow), "--denyfile", str(deny), "-e", "rev",
                 "0").started()
    assert served_from(lst.port, "127.0.0.5")
    assert closed_at_once(lst.port, ("127.0.0.6", 0))
    assert closed_at_once(lst.port, ("127.0.0.1", 0))


@needs_ipv6
def test_listen_ipv6_prefixes(listen):
    lst = listen("-k", "-6", "--deny", "::1/128", "-e", "rev", "0").started()
    assert closed_at_once(lst.port, ("::1", 0), host="::1")
    lst2 = listen("-k", "-6", "--allow", "::/1", "-e", "rev", "0").started()   # ::1 is in ::/1
    assert exchange(("::1", lst2.port), b"v6\n", family=socket.AF_INET6) == b"6v\n"
    lst3 = listen("-k", "-6", "--allow", "8000::/1", "-e", "rev", "0").started()
    assert closed_at_once(lst3.port, ("::1", 0), host="::1")


def test_listen_relay_refused_client_does_not_end_it(listen):
    """Without -k, a refused client is not 'the' client: the next allowed one is."""
    lst = listen("--allow", "127.0.0.1", "0", stdin=b"for the allowed one\n").started()
    assert closed_at_once(lst.port, ("127.0.0.7", 0))
    assert lst.alive()
    with socket.create_connection(("127.0.0.1", lst.port), timeout=5,
                                  source_address=("127.0.0.1", 0)) as c:
        got = b""
        while True:
            chunk = c.recv(100)
            if not chunk:
                break
            got += chunk
    assert got == b"for the allowed one\n"
    assert lst.wait(10) == 0


def test_serve_deny_tcp_and_udp(serve):
    s = serve("--deny", "127.0.0.3", "--deny", "127.0.0.16/28", "echo:0")
    port = s.port("tcp", host="127.0.0.1")
    uport = s.port("udp", host="127.0.0.1")
    assert exchange(("127.0.0.1", port), b"ok\n", source=("127.0.0.2", 0)) == b"ok\n"
    assert closed_at_once(port, ("127.0.0.3", 0))
    assert closed_at_once(port, ("127.0.0.20", 0))
    s.wait_line(r"refused 127\.0\.0\.3:\d+ \(not allowed\)", stream="err")
    for src, answered in (("127.0.0.2", True), ("127.0.0.3", False), ("127.0.0.31", False)):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((src, 0))
            u.settimeout(0.5)
            u.sendto(b"dgram", ("127.0.0.1", uport))
            try:
                got = u.recvfrom(100)[0]
            except socket.timeout:
                got = None
        assert (got == b"dgram") == answered, src


def test_serve_max_conns_per_source(serve):
    s = serve("-t", "--max-conns-per-source", "2", "echo:0")
    port = s.port("tcp", host="127.0.0.1")
    held = []
    try:
        for _ in range(2):
            c = socket.create_connection(("127.0.0.1", port), timeout=5,
                                         source_address=("127.0.0.2", 0))
            c.sendall(b"x")
            assert c.recv(1) == b"x"
            held.append(c)
        assert closed_at_once(port, ("127.0.0.2", 0))            # the third from it
        assert exchange(("127.0.0.1", port), b"other\n", source=("127.0.0.3", 0)) == b"other\n"
        s.wait_line(r"too many from that address", stream="err")
        held.pop().close()                                       # a slot frees
        deadline = time.monotonic() + 5
        while True:
            try:
                if exchange(("127.0.0.1", port), b"again\n", source=("127.0.0.2", 0),
                            timeout=2) == b"again\n":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the freed slot was never given back"
            time.sleep(0.05)
    finally:
        for c in held:
            c.close()


def test_serve_slot_given_back_after_reset(serve):
    """A client that resets frees its slot too (the count is kept by descriptor, not
    looked up from an address the kernel has forgotten)."""
    s = serve("-t", "--max-conns-per-source", "1", "echo:0")
    port = s.port("tcp", host="127.0.0.1")
    for _ in range(5):
        c = socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=("127.0.0.4", 0))
        c.sendall(b"y")
        assert c.recv(1) == b"y"
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()           # RST
        time.sleep(0.1)
    assert exchange(("127.0.0.1", port), b"z", source=("127.0.0.4", 0), timeout=5) == b"z"


def test_serve_sighup_drains(serve):
    s = serve("-t", "echo:0")
    port = s.port("tcp", host="127.0.0.1")
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"1")
    assert c.recv(1) == b"1"
    s.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert s.alive(), "SIGHUP killed the server (default action)"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)    # no new clients
    c.sendall(b"2")
    assert c.recv(1) == b"2"                # the present one goes on
    c.close()
    assert s.wait(5) == 0


def privileged_free_port():
    """A port below 1024 nothing uses now (tried by binding it, as root)."""
    for port in range(990, 600, -1):
        with socket.socket() as t:
            try:
                t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024")


def proc_ids(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    uid = text.split("Uid:")[1].split("\n")[0].split()
    gid = text.split("Gid:")[1].split("\n")[0].split()
    groups = text.split("Groups:")[1].split("\n")[0].split()
    capeff = text.split("CapEff:")[1].split("\n")[0].strip()
    return uid, gid, groups, capeff


@needs_root
@pytest.mark.parametrize("cmd", ["serve", "listen"])
def test_user_nobody_after_binding_below_1024(serve, listen, cmd):
    import pwd
    nobody = pwd.getpwnam("nobody")
    port = privileged_free_port()
    if cmd == "serve":
        p = serve("-t", "-4", "--user", "nobody", f"echo:{port}")
        pid = p.pid
    else:
        p = listen("-k", "--user", "nobody", "-e", "cat", str(port)).started()
        pid = p.pid
    uid, gid, groups, capeff = proc_ids(pid)
    assert uid == [str(nobody.pw_uid)] * 4
    assert gid == [str(nobody.pw_gid)] * 4
    assert groups in ([], [str(nobody.pw_gid)])
    assert int(capeff, 16) == 0
    assert exchange(("127.0.0.1", port), b"as nobody\n") == b"as nobody\n"


def test_user_needs_root_to_drop(tmp_path):
    if os.geteuid() == 0:
        r = run_to_end(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        SOCKFLOW, "listen", "--user", "root", "0"])
    else:
        r = run_to_end([SOCKFLOW, "listen", "--user", "root", "0"])
    assert r.returncode == 1
    assert re.search(r"--user root: set(groups|gid|uid)\(0\): Operation not permitted",
                     r.stderr.decode()), r.stderr


def test_listen_keep_open_per_source_slot_comes_back(listen):
    """-k serves one at a time: each client from the same address gives its slot back."""
    lst = listen("-k", "--max-conns-per-source", "1", "0").started()
    for i in range(3):
        with socket.create_connection(("127.0.0.1", lst.port), timeout=5,
                                      source_address=("127.0.0.6", 0)) as c:
            c.settimeout(5)
            c.sendall(b"%d" % i)
            assert c.recv(10) == b""        # our input is empty: FIN, not a refusal
        lst.wait_out(i + 1)
    assert lst.stdout == b"012"
    assert "refused" not in lst.stderr


def test_serve_warns_once_for_a_wildcard_address(serve):
    s = serve("-l", "0.0.0.0", "echo:0", expect=2)
    s.wait_line(r"warning: listening on 0\.0\.0\.0:\d+: every address of this host", stream="err")
    time.sleep(0.2)
    assert s.stderr.count("warning") == 1, s.stderr     # one line for TCP and UDP
    quiet = serve("-t", "echo:0")
    time.sleep(0.2)
    assert "warning" not in quiet.stderr
