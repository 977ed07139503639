#!/usr/bin/env bash
# smoke.sh - builds the benchmark peers and checks that each one echoes on 127.0.0.1.
set -u
cd "$(dirname "$0")"

PY=/usr/bin/python3
TMP=$(mktemp -d)
PIDS=()
FAILS=0

ok()   { echo "ok   $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

# stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL; returns the exit status.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && stop_pid "$pid"
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# start NAME CMD...: runs CMD 0 in the background, sets PID and PORT from its banner.
start() {
    local name=$1 i line
    shift
    "$@" 0 >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PID=$!
    PIDS+=("$PID")
    PORT=
    for i in $(seq 50); do
        line=$(head -n 1 "$TMP/$name.out")
        if [[ $line =~ ^listening\ on\ (tcp|udp)\ 127\.0\.0\.1:([0-9]+)$ ]]; then
            PORT=${BASH_REMATCH[2]}
            return 0
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

tcp_hello() {
    timeout 10 "$PY" - "$1" <<'PYEOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"hello\n")
data = b""
while len(data) < 6:
    chunk = s.recv(64)
    if not chunk:
        break
    data += chunk
s.close()
sys.exit(0 if data == b"hello\n" else 1)
PYEOF
}

udp_hello() {
    timeout 10 "$PY" - "$1" <<'PYEOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hello\n", ("127.0.0.1", int(sys.argv[1])))
data, _ = s.recvfrom(64)
sys.exit(0 if data == b"hello\n" else 1)
PYEOF
}

# tcp_halfclose PORT BYTES: a sender writes BYTES of varied data and then shuts down its
# write side; the reader starts 0.3 s late, so that the server's writes back up and its
# FIN handling meets pending bytes. Every byte must come back, in order, and then an
# orderly end of stream (not a reset, not a hang).
tcp_halfclose() {
    timeout 30 "$PY" - "$1" "$2" <<'PYEOF'
import socket, sys, threading, time
port, total = int(sys.argv[1]), int(sys.argv[2])
data = (bytes(range(251)) * (total // 251 + 1))[:total]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)   # a small window: the server backs up
s.settimeout(10)
s.connect(("127.0.0.1", port))
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send, daemon=True)
t.start()
time.sleep(0.3)
got = bytearray()
try:
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        got += chunk
except OSError as e:
    print("after %d bytes: %s" % (len(got), e))
    sys.exit(1)
t.join(10)
s.close()
if bytes(got) != data:
    print("%d bytes back of %d, first difference at %d" % (len(got), total,
          next((i for i in range(min(len(got), total)) if got[i] != data[i]), min(len(got), total))))
    sys.exit(1)
PYEOF
}

# udp_batch PORT: rounds of 50 datagrams of 1..1000 bytes sent at once (several per
# receive call), then datagrams of 60000 and 65507 bytes one at a time; each must come
# back whole. Rounds stay under the server's default receive buffer, which drops the rest.
udp_batch() {
    timeout 30 "$PY" - "$1" <<'PYEOF'
import socket, sys
dest = ("127.0.0.1", int(sys.argv[1]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.settimeout(5)
def exchange(datagrams):
    want = {}
    for d in datagrams:
        want[d] = want.get(d, 0) + 1
        s.sendto(d, dest)
    for got in range(len(datagrams)):
        try:
            d, _ = s.recvfrom(65536)
        except socket.timeout:
            print("%d of %d datagrams back" % (got, len(datagrams)))
            sys.exit(1)
        if want.get(d, 0) == 0:
            print("a datagram of %d bytes that was not sent" % len(d))
            sys.exit(1)
        want[d] -= 1
for r in range(4):
    exchange([bytes([r, i]) + bytes([i]) * (i * 20) for i in range(50)])
for n in (60000, 65507):
    exchange([bytes([n & 0xff]) * n])
PYEOF
}

# children_gone PID: true once PID has no child processes (zombies included), waits up to 5 s.
children_gone() {
    local i
    for i in $(seq 50); do
        [ -z "$(ps -o pid= --ppid "$1")" ] && return 0
        sleep 0.1
    done
    return 1
}

# check NAME PROTO CMD...: start, echo "hello\n", stop, expect exit status 0.
check() {
    local name=$1 proto=$2 status
    shift 2
    if ! start "$name" "$@"; then
        fail "$name: no banner ($(cat "$TMP/$name.err"))"
        return
    fi
    if "${proto}_hello" "$PORT"; then ok "$name: $proto echo on port $PORT"; else fail "$name: $proto echo"; fi
    if ! children_gone "$PID"; then fail "$name: child processes left: $(ps -o pid=,stat= --ppid "$PID" | tr '\n' ' ')"; fi
    stop_pid "$PID"
    status=$?
    if [ "$status" -eq 0 ]; then ok "$name: exited 0 on SIGTERM"; else fail "$name: exit status $status"; fi
}

echo "== build"
if ! timeout 120 make -s all; then
    echo "FAIL build"
    exit 1
fi

echo "== servers"
check epoll_echo      tcp bin/epoll_echo
[ -x bin/uv_echo ] && check uv_echo tcp bin/uv_echo
[ -x bin/ev_echo ] && check ev_echo tcp bin/ev_echo
check unp_thread_echo tcp bin/unp_thread_echo
check unp_fork_echo   tcp bin/unp_fork_echo
check node_echo       tcp node node_echo.js
check udp_echo        udp bin/udp_echo
check mmsg_echo       udp bin/mmsg_echo
check node_udp_echo   udp node node_udp_echo.js

echo "== half-close and batches"
if start epoll_echo_hc bin/epoll_echo; then
    for n in 6 100000 16000000; do
        if out=$(tcp_halfclose "$PORT" "$n"); then
            ok "epoll_echo: $n bytes then FIN: all back, then end of stream"
        else
            fail "epoll_echo: $n bytes then FIN: $out"
        fi
    done
    stop_pid "$PID"
else
    fail "epoll_echo_hc: no banner"
fi
if start mmsg_echo_batch bin/mmsg_echo; then
    if out=$(udp_batch "$PORT"); then ok "mmsg_echo: 4 × 50 datagrams at once, and 60000 and 65507 bytes, back whole"
    else fail "mmsg_echo: batch: $out"; fi
    stop_pid "$PID"
else
    fail "mmsg_echo_batch: no banner"
fi

echo "== epoll_gen"
if start epoll_echo_gen bin/epoll_echo; then
    if out=$(timeout 10 bin/epoll_gen echo 127.0.0.1 "$PORT" -c 4 -s 64 -P 2 -d 1 -w 0.3) &&
       [ "$(printf '%s\n' "$out" | head -n 1)" = measuring ] &&
       printf '%s\n' "$out" | grep -q '^requests=[1-9][0-9]* seconds=1\.'; then
        ok "epoll_gen echo vs epoll_echo: $(echo $out)"
    else
        fail "epoll_gen echo vs epoll_echo: ${out:-no output}"
    fi
    stop_pid "$PID"
else
    fail "epoll_echo_gen: no banner"
fi
if start udp_echo_gen bin/udp_echo; then
    if out=$(timeout 10 bin/epoll_gen udp 127.0.0.1 "$PORT" -c 4 -s 64 -d 1); then
        ok "epoll_gen udp vs udp_echo: $(echo $out)"
    else
        fail "epoll_gen udp vs udp_echo: ${out:-no output}"
    fi
    stop_pid "$PID"
else
    fail "udp_echo_gen: no banner"
fi

if [ "$FAILS" -eq 0 ]; then echo "== all passed"; else echo "== $FAILS failure(s)"; fi
[ "$FAILS" -eq 0 ]
