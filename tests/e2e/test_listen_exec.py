"""`sockflow listen -e/-c`: a program per connection, as ncat -e, socat EXEC: and inetd.
The socket is the program's standard input and output, it gets nothing else of ours,
runs in its own process group with the ucspi-tcp variables, and is always reaped."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import SOCKFLOW
from listen_helpers import child_states, exchange, fill_until_blocked, listen, run_to_end  # noqa: F401 (listen: a fixture)

ALL_BYTES = bytes(range(256))



def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("tool", ["nc", "ncat", "socat", "sockflow", "python"])
def test_exec_cat_with_each_client(listen, tool):
    if tool in ("nc", "ncat", "socat") and shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (tests/deps.sh installs it)")
    data = b"echoed by cat\n" + ALL_BYTES * 4
    lst = listen("-e", "cat", "0").started()
    argv = {"nc": ["nc", "-N", "127.0.0.1", str(lst.port)],
            "ncat": ["ncat", "127.0.0.1", str(lst.port)],
            "socat": ["socat", "-t", "5", "-", f"TCP:127.0.0.1:{lst.port}"],
            "sockflow": [SOCKFLOW, "connect", "127.0.0.1", str(lst.port)]}.get(tool)
    if argv is None:
        got = exchange(("127.0.0.1", lst.port), data)
    else:
        r = run_to_end(argv, input=data)
        assert r.returncode == 0, r.stderr
        got = r.stdout
    assert got == data
    assert lst.wait(10) == 0        # without -k: one client, done when its program is
    assert re.search(r"127\.0\.0\.1:\d+: \d+ exited 0", lst.stderr), lst.stderr


def test_exec_rev_and_binary_1mib_through_cat(listen):
    lst = listen("-k", "-e", "rev", "0").started()
    assert exchange(("127.0.0.1", lst.port), b"hello\nworld\n") == b"olleh\ndlrow\n"
    big = os.urandom(1 << 20)
    lst2 = listen("-c", "cat", "0").started()
    assert exchange(("127.0.0.1", lst2.port), big, timeout=30) == big


def test_environment_descriptors_and_group(listen):
    script = ('echo "PROTO=$PROTO"; echo "TCPLOCALIP=$TCPLOCALIP"; '
              'echo "TCPLOCALPORT=$TCPLOCALPORT"; echo "TCPREMOTEIP=$TCPREMOTEIP"; '
              'echo "TCPREMOTEPORT=$TCPREMOTEPORT"; echo fds:; ls -1 /proc/$$/fd; '
              'echo "pgid=$(ps -o pgid= -p $$ | tr -d " ") pid=$$"')
    lst = listen("-k", "-c", script, "0").started()
    with socket.socket() as s:
        s.settimeout(10)
        s.bind(("127.0.0.1", 0))
        myport = s.getsockname()[1]
        s.connect(("127.0.0.1", lst.port))
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    text = out.decode()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line
               and not line.startswith("pgid"))
    env["fds"] = " ".join(text.split("fds:\n", 1)[1].split("pgid=")[0].split())
    assert env["PROTO"] == "TCP"
    assert env["TCPLOCALIP"] == "127.0.0.1" and env["TCPLOCALPORT"] == str(lst.port)
    assert env["TCPREMOTEIP"] == "127.0.0.1" and env["TCPREMOTEPORT"] == str(myport)
    # standard input, output and error only: no listener, no other client
    assert env["fds"].split() == ["0", "1", "2"], out
    m = re.search(r"pgid=(\d+) pid=(\d+)", out.decode())
    assert m and m.group(1) == m.group(2)           # its own process group


def test_no_other_client_descriptor(listen):
    """While one client's program runs, a second one's sees only its own socket."""
    lst = listen("-k", "-c", 'ls -l /proc/$$/fd; cat >/dev/null', "0").started()
    a = socket.create_connection(("127.0.0.1", lst.port), timeout=10)
    b = socket.create_connection(("127.0.0.1", lst.port), timeout=10)
    try:
        outs = []
        for s in (a, b):
            buf = b""
            while buf.count(b"\n") < 4:
                buf += s.recv(4096)
            outs.append(buf.decode())
        for text in outs:
            socks = set(re.findall(r"socket:\[(\d+)\]", text))
            assert len(socks) == 1, text    # 0 and 1: the same one socket
            assert not re.search(r"\s3 -> ", text), text
        assert set(re.findall(r"socket:\[(\d+)\]", outs[0])) != \
            set(re.findall(r"socket:\[(\d+)\]", outs[1]))
    finally:
        a.close()
        b.close()


def test_program_that_exits_at_once(listen):
    lst = listen("-k", "-e", "true", "0").started()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", lst.port), timeout=5) as s:
            s.settimeout(5)
            assert s.recv(10) == b""            # its end closed with it
    wait_for(lambda: lst.stderr.count("exited 0") == 3, what="three exits logged")
    wait_for(lambda: not lst.children(), what="children reaped")
    assert "Z" not in child_states(lst.pid).values()


def test_program_that_never_reads_blocks_nobody(listen, tmp_path):
    """The first client's program never reads; the client fills every buffer on the
    way. The second client's program (cat) answers at once all the same."""
    flag = tmp_path / "first"
    lst = listen("-k", "-c", f'if [ -e {flag} ]; then exec cat; fi; touch {flag}; exec sleep 30',
                 "0").started()
    stuck = socket.create_connection(("127.0.0.1", lst.port), timeout=5)
    try:
        wait_for(flag.exists, what="the first program")
        assert fill_until_blocked(stuck, b"x") > 0
        t0 = time.monotonic()
        assert exchange(("127.0.0.1", lst.port), b"still served\n", timeout=5) == b"still served\n"
        assert time.monotonic() - t0 < 3
    finally:
        stuck.close()


def test_client_that_leaves_ends_its_program(listen):
    """The program reads EOF when the client goes, and is reaped: no zombie."""
    lst = listen("-k", "-c", "cat >/dev/null; echo gone >&2", "0").started()
    s = socket.create_connection(("127.0.0.1", lst.port), timeout=5)
    wait_for(lambda: len(lst.children()) == 1, what="the program to start")
    s.sendall(b"some bytes")
    s.close()
    lst.wait_err(r"^gone$")
    lst.wait_err(r"exited 0")
    wait_for(lambda: not lst.children(), what="the program reaped")


def test_max_conns_refuses_until_a_slot_frees(listen):
    lst = listen("-k", "--max-conns", "1", "-e", "cat", "0").started()
    a = socket.create_connection(("127.0.0.1", lst.port), timeout=5)
    a.sendall(b"a")
    assert a.recv(1) == b"a"
    with socket.create_connection(("127.0.0.1", lst.port), timeout=5) as b:
        b.settimeout(5)
        try:
            assert b.recv(1) == b""
        except ConnectionResetError:
            pass
    lst.wait_err(r"--max-conns 1 reached")
    a.close()
    wait_for(lambda: not lst.children(), what="the first program reaped")
    assert exchange(("127.0.0.1", lst.port), b"c") == b"c"


def test_exec_failure_is_logged_server_goes_on(listen):
    lst = listen("-k", "-e", "/nonexistent/prog", "0").started()
    with socket.create_connection(("127.0.0.1", lst.port), timeout=5) as s:
        s.settimeout(5)
        assert s.recv(1) == b""
    lst.wait_err(r"exec /nonexistent/prog: No such file or directory")
    assert lst.alive()


def test_sigterm_drains_programs_second_signal_hangs_up(listen):
    lst = listen("-k", "-c", "trap 'echo hup >&2; exit 3' HUP; cat", "0").started()
    s = socket.create_connection(("127.0.0.1", lst.port), timeout=5)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    lst.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert lst.alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", lst.port), timeout=2)
    s.sendall(b"y")                     # the present client goes on
    assert s.recv(1) == b"y"
    lst.signal(signal.SIGTERM)          # again: at once, the program gets SIGHUP
    assert lst.wait(5) == 0
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    s.close()


def test_inetd_mode_under_systemd_socket_activate(tmp_path):
    if shutil.which("systemd-socket-activate") is None:
        pytest.skip("systemd-socket-activate not installed (Debian package systemd)")
    from conftest import free_port
    port = free_port()
    sa = subprocess.Popen(["systemd-socket-activate", "--inetd", "-a", "-l",
                           f"127.0.0.1:{port}", SOCKFLOW, "listen", "--inetd", "-c",
                           'echo "peer $TCPREMOTEIP"; rev'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        from conftest import wait_listening
        wait_listening(port)
        for word in (b"abc", b"xyz"):
            got = exchange(("127.0.0.1", port), word + b"\n")
            assert got == b"peer 127.0.0.1\n" + word[::-1] + b"\n"
    finally:
        sa.terminate()
        sa.wait(5)


def test_inetd_mode_refuses_by_rules_and_needs_a_socket(tmp_path):
    r = run_to_end([SOCKFLOW, "listen", "--inetd", "-e", "cat"], input=b"")
    assert r.returncode == 1
    assert b"--inetd: standard input is not a connected stream socket" in r.stderr
    a, b = socket.socketpair()
    try:
        # a Unix socketpair has no address: rules do not apply, the program runs
        p = subprocess.run([SOCKFLOW, "listen", "--inetd", "--deny", "127.0.0.0/8", "-c",
                            "echo ran"], stdin=b.fileno(), stdout=b.fileno(),
                           stderr=subprocess.PIPE, timeout=10)
        assert p.returncode == 0, p.stderr
        a.settimeout(5)
        assert a.recv(100) == b"ran\n"
    finally:
        a.close()
        b.close()


def test_connect_exec_talks_to_listen_exec(listen, tmp_path):
    """Programs on both ends: connect -c's program has the socket as its standard input
    and output and the addresses in its environment."""
    out = tmp_path / "out"
    lst = listen("-e", "cat", "0").started()
    r = run_to_end([SOCKFLOW, "connect", "-c",
                    f'echo stressed; read reply; echo "$reply $TCPREMOTEPORT $PROTO" > {out}',
                    "127.0.0.1", str(lst.port)])
    assert r.returncode == 0, r.stderr
    assert out.read_text() == f"stressed {lst.port} TCP\n"
    assert lst.wait(10) == 0
    r = run_to_end([SOCKFLOW, "connect", "-u", "-e", "cat", "127.0.0.1", "9"])
    assert r.returncode == 2 and b"-e/-c: TCP or Unix stream only" in r.stderr
