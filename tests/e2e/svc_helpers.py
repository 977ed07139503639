"""Helpers shared by the services tests: the bytes each classic service must send."""
import re
import socket
import time

RING = bytes(range(0x20, 0x7F))          # the 95 printable characters
DAYTIME_RE = re.compile(rb"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
                        rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                        rb"[ 123]\d \d\d:\d\d:\d\d \d{4}\r\n$")
EPOCH_1900 = 2208988800


def chargen_line(i):
    """Line i of chargen: 72 characters from ring offset i mod 95, then CRLF."""
    r = i % 95
    return (RING[r:] + RING[:r])[:72] + b"\r\n"


def chargen_stream(n):
    """The first n bytes of a chargen TCP stream."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += chargen_line(i)
        i += 1
    return bytes(out[:n])


def daytime_seconds(line):
    """A daytime line back to Unix seconds (local time, as the servers write it)."""
    return time.mktime(time.strptime(line.decode().strip(), "%a %b %d %H:%M:%S %Y"))


def rfc868_seconds(four):
    assert len(four) == 4, four
    return int.from_bytes(four, "big") - EPOCH_1900


def connect(port, host="127.0.0.1", timeout=10.0):
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_exactly(s, n):
    got = bytearray()
    while len(got) < n:
        chunk = s.recv(min(65536, n - len(got)))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def read_to_eof(s, limit=1 << 24):
    """Everything until the peer's FIN; raises ConnectionResetError on RST."""
    got = bytearray()
    while len(got) < limit:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def udp_socket(bind=("127.0.0.1", 0), timeout=1.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(bind)
    s.settimeout(timeout)
    return s


def udp_ask(port, data=b"x", bind=("127.0.0.1", 0), timeout=1.0, host="127.0.0.1"):
    """One datagram to host:port from bind; the reply or None after timeout."""
    with udp_socket(bind, timeout) as s:
        s.sendto(data, (host, port))
        try:
            return s.recvfrom(70000)[0]
        except socket.timeout:
            return None


def port_free(port, kind=socket.SOCK_STREAM, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False
