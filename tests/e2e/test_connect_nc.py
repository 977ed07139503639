"""`sockflow connect` as an nc user expects it: nothing lost when the server closes its
side first (against nc -N, ncat, socat and Python servers), failures reported exactly,
and nc's flags (-v -n -p -N -C -i, `sockflow HOST PORT`)."""
import re
import shutil
import socket
import struct
import subprocess
import time

import pytest

from conftest import SOCKFLOW, assert_no_sanitizer_report, free_port, run_sockflow, \
    wait_listening
from test_connect import PyServer


def client_late_input(port, size, delay, timeout=30):
    """`(sleep DELAY; head -c SIZE /dev/zero) | sockflow connect 127.0.0.1 PORT`."""
    cmd = f"(sleep {delay}; head -c {size} /dev/zero) | exec {SOCKFLOW} connect 127.0.0.1 {port}"
    r = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    assert_no_sanitizer_report(r.stderr)
    return r


def tool_server(argv, port, got, stdin_text=b"banner\n", proto="tcp"):
    """A peer tool listening on 127.0.0.1:port, its standard input the banner, its
    standard output the file got."""
    with open(got, "wb") as out:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE)
    p.stdin.write(stdin_text)
    p.stdin.close()
    wait_listening(port, proto)
    return p


SIZES_DELAYS = [(100000, 0.3), (1, 0.3), (1 << 20, 0), (300000, 1.0)]

SERVERS = {
    # nc -N: FIN at the end of its input, then it reads on until our FIN.
    "nc": lambda port: ["nc", "-N", "-l", "127.0.0.1", str(port)],
    "ncat": lambda port: ["ncat", "-l", "127.0.0.1", str(port)],
    # socat half-closes at end of stdin and waits -t SECS for the other direction.
    "socat": lambda port: ["socat", "-t", "10", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
                           "STDIO"],
}


@pytest.mark.parametrize("size, delay", SIZES_DELAYS)
@pytest.mark.parametrize("tool", sorted(SERVERS))
def test_server_closing_first_gets_all_input(tool, size, delay, tmp_path):
    # The case: the server says its banner and closes its side; input that comes
    # later must still reach it, all of it, and connect exits 0.
    if shutil.which(tool) is None:
        pytest.skip(f"no {tool}")
    port = free_port()
    got = tmp_path / "got.bin"
    srv = tool_server(SERVERS[tool](port), port, got)
    try:
        r = client_late_input(port, size, delay)
        assert srv.wait(15) == 0, srv.stderr.read()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait(5)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"banner\n", b"")
    assert got.stat().st_size == size
    assert got.read_bytes() == bytes(size)


@pytest.mark.parametrize("size, delay", SIZES_DELAYS)
def test_python_server_closing_first_gets_all_input(size, delay):
    def handler(conn, srv):
        conn.sendall(b"banner\n")
        conn.shutdown(socket.SHUT_WR)
        srv.read_to_eof(conn)
    srv = PyServer(handler)
    r = client_late_input(srv.port, size, delay)
    srv.join()
    assert (r.returncode, r.stdout, r.stderr) == (0, b"banner\n", b"")
    assert len(srv.received) == size


def test_server_gone_before_input_is_a_failure():
    # The server closes altogether (not a half-close): the input that comes later cannot
    # arrive; the reset says so, and connect exits 1 rather than 0.
    with socket.socket() as l:
        l.bind(("127.0.0.1", 0))
        l.listen(1)
        port = l.getsockname()[1]
        cmd = f"(sleep 0.3; head -c 100000 /dev/zero) | exec {SOCKFLOW} connect 127.0.0.1 {port}"
        p = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        l.settimeout(10)
        c, _ = l.accept()
        c.sendall(b"bye\n")
        c.close()
        out, err = p.communicate(timeout=20)
    assert_no_sanitizer_report(err)
    assert p.returncode == 1 and out == b"bye\n"
    assert re.fullmatch(rf"sockflow: send 127\.0\.0\.1:{port}: "
                        r"(Connection reset by peer|Broken pipe)\n", err.decode()), err


def test_reset_with_unsent_input_is_a_failure():
    with socket.socket() as l:
        l.bind(("127.0.0.1", 0))
        l.listen(1)
        port = l.getsockname()[1]
        p = subprocess.Popen([SOCKFLOW, "connect", "-v", "127.0.0.1", str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        l.settimeout(10)
        c, _ = l.accept()
        assert p.stderr.readline().startswith(b"connected ")   # connect() has returned
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        time.sleep(0.2)
        try:
            p.stdin.write(b"x" * 100000)
            p.stdin.close()
        except BrokenPipeError:
            pass
        p.stdin = None
        out, err = p.communicate(timeout=10)
    assert_no_sanitizer_report(err)
    assert p.returncode == 1
    lines = err.decode().splitlines()
    assert re.fullmatch(r"sent 0 bytes, received 0 bytes in \d+\.\d+ s", lines[0]), lines
    assert lines[1:] == [f"sockflow: recv 127.0.0.1:{port}: Connection reset by peer"]


def test_output_that_cannot_be_written_is_a_failure(serve):
    s = serve("-t", "echo:0")
    port = s.port("tcp")
    r = subprocess.run(["bash", "-c", f"echo hi | {SOCKFLOW} connect 127.0.0.1 {port} > /dev/full"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert_no_sanitizer_report(r.stderr)
    assert (r.returncode, r.stderr) == (1, b"sockflow: write output: No space left on device\n")


@pytest.mark.parametrize("args", [["--help"], ["connect", "--help"], ["bench", "--help"],
                                  ["demo", "--section", "1"]])
def test_standard_output_full_exits_1(args):
    with open("/dev/full", "wb") as full:
        r = subprocess.run([SOCKFLOW, *args], stdout=full, stderr=subprocess.PIPE, timeout=60)
    assert_no_sanitizer_report(r.stderr)
    assert r.returncode == 1
    assert r.stderr.decode().splitlines()[-1].startswith("sockflow: write standard output: ")


def test_write_first_few_epoll_calls(serve, tmp_path):
    # Each chunk is written at once: the epoll set is not changed per chunk. 10 MB in
    # 64 KiB chunks used 616 epoll_ctl calls when each chunk was queued first.
    if shutil.which("strace") is None:
        pytest.skip("no strace")
    # The bound assumes the pace of the epoll path's echo (the io_uring path's comes back
    # in more pieces: about 1.7 wake-ups a chunk).
    s = serve("-t", "--no-io-uring", "echo:0")
    out = tmp_path / "strace.txt"
    cmd = (f"head -c 10000000 /dev/zero | strace -f -c -o {out} -e trace=epoll_ctl,epoll_wait "
           f"{SOCKFLOW} connect 127.0.0.1 {s.port('tcp')} | wc -c")
    r = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert r.stdout.strip() == b"10000000"
    calls = {m.group(2): int(m.group(1))
             for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$",
                                  out.read_text(), re.M)}
    assert calls.get("epoll_ctl", 0) < 40, calls
    # about one wake-up per chunk (153 chunks), not two
    assert calls["epoll_wait"] < 153 * 1.5, calls


# ---- nc's flags ----

def test_verbose_names_both_addresses_and_counts(serve):
    s = serve("-t", "echo:0")
    port = s.port("tcp")
    r = run_sockflow(["connect", "-v", "127.0.0.1", str(port)], input=b"hello\n")
    assert (r.returncode, r.stdout) == (0, b"hello\n")
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 2, lines
    m = re.fullmatch(rf"connected 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:{port}", lines[0])
    assert m and int(m.group(1)) != port, lines
    assert re.fullmatch(r"sent 6 bytes, received 6 bytes in \d+\.\d{3} s", lines[1]), lines


def test_source_port_p():
    src = free_port()
    srv = PyServer(lambda conn, srv: None)
    r = run_sockflow(["connect", "-p", str(src), "127.0.0.1", str(srv.port)], input=b"")
    srv.join()
    assert r.returncode == 0, r.stderr
    assert srv.peers == [("127.0.0.1", src)]


def test_host_port_without_connect(serve):
    s = serve("-t", "echo:0")
    r = run_sockflow(["127.0.0.1", str(s.port("tcp"))], input=b"like nc\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"like nc\n", b"")
    r = run_sockflow(["-v", "-N", "127.0.0.1", str(s.port("tcp"))], input=b"flags first\n")
    assert (r.returncode, r.stdout) == (0, b"flags first\n")
    assert r.stderr.startswith(b"connected ")


def test_crlf():
    srv = PyServer(lambda conn, srv: srv.read_to_eof(conn))
    r = run_sockflow(["connect", "-C", "127.0.0.1", str(srv.port)], input=b"GET / HTTP/1.0\n\n")
    srv.join()
    assert r.returncode == 0, r.stderr
    assert bytes(srv.received) == b"GET / HTTP/1.0\r\n\r\n"


def test_idle_timeout():
    with socket.socket() as l:
        l.bind(("127.0.0.1", 0))
        l.listen(1)
        port = l.getsockname()[1]
        t0 = time.monotonic()
        p = subprocess.Popen([SOCKFLOW, "connect", "-i", "0.5", "127.0.0.1", str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            rc = p.wait(10)         # input stays open and quiet; so does the server
            took = time.monotonic() - t0
            err = p.stderr.read()
        finally:
            p.stdin.close()
            if p.poll() is None:
                p.kill()
    assert_no_sanitizer_report(err)
    assert rc == 1
    assert err.decode() == f"sockflow: idle 127.0.0.1:{port} after 500 ms: Connection timed out\n"
    assert 0.45 <= took < 5, took


def test_numeric_refuses_names():
    r = run_sockflow(["connect", "-n", "localhost", "80"])
    assert r.returncode == 1 and r.stdout == b""
    assert re.fullmatch(rb"sockflow: resolve localhost:80: [^\n]+\n", r.stderr), r.stderr


def test_bracketed_ipv6_host_is_not_bracketed_twice():
    port = free_port()
    r = run_sockflow(["connect", "-6", "-n", "[::1]", str(port)])
    assert r.returncode == 1
    assert b"[[" not in r.stderr
    assert r.stderr.decode().startswith(("sockflow: connect [::1]:", "sockflow: resolve ::1"))


@pytest.mark.parametrize("args, message", [
    (["-s", "22476"], "-s 22476: a source address, not a port (for a source port: "
                      "-s :22476 or -p 22476)"),
    (["-p", "99999"], "-p 99999: a port number from 0 to 65535"),
    (["-p", "x"], "-p x: a port number from 0 to 65535"),
    (["-i", "soon"], "-i soon: a number of seconds"),
    (["--parallel", "4"], "--json and --parallel go with -z"),
    (["-s", "127.0.0.1:5", "-p", "6"], "-s 127.0.0.1:5 and -p 6: two source ports"),
    (["-s", "[::1"], "-s address [::1: missing ']'"),
])
def test_bad_arguments_exit_2(args, message):
    r = run_sockflow(["connect", *args, "127.0.0.1", "7"])
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.decode() == (f"sockflow connect: {message}\n"
                                 "Try 'sockflow connect --help'.\n")


def test_unknown_service_name_exits_2():
    r = run_sockflow(["connect", "127.0.0.1", "nosuchservice"])
    assert (r.returncode, r.stdout) == (2, b"")
    assert r.stderr.decode() == ("sockflow connect: port nosuchservice: not a number from 0 "
                                 "to 65535 nor a service in /etc/services\n"
                                 "Try 'sockflow connect --help'.\n")


def test_service_name_port(serve):
    # A name from /etc/services still works as the port (here: echo, port 7, refused
    # or answered — either way not a usage error).
    r = run_sockflow(["connect", "-w", "1", "127.0.0.1", "echo"], input=b"")
    assert r.returncode in (0, 1)
    assert r.stderr in (b"", b"sockflow: connect 127.0.0.1:7: Connection refused\n")
