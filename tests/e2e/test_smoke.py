"""The smallest end-to-end check: echo over TCP and UDP through the real binary."""
from conftest import tcp_exchange, udp_exchange


def test_tcp_and_udp_echo(serve):
    s = serve("echo:0")
    assert tcp_exchange(s.port("tcp"), b"hello\n") == b"hello\n"
    assert udp_exchange(s.port("udp"), b"ping") == b"ping"
    assert s.stop() == 0
