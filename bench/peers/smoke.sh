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
check uv_echo         tcp bin/uv_echo
check ev_echo         tcp bin/ev_echo
check unp_thread_echo tcp bin/unp_thread_echo
check unp_fork_echo   tcp bin/unp_fork_echo
check node_echo       tcp node node_echo.js
check udp_echo        udp bin/udp_echo
check node_udp_echo   udp node node_udp_echo.js

echo "== epoll_gen"
if start uv_echo_gen bin/uv_echo; then
    if out=$(timeout 10 bin/epoll_gen echo 127.0.0.1 "$PORT" -c 4 -s 64 -P 2 -d 1); then
        ok "epoll_gen echo vs uv_echo: $out"
    else
        fail "epoll_gen echo vs uv_echo: ${out:-no output}"
    fi
    stop_pid "$PID"
else
    fail "uv_echo_gen: no banner"
fi
if start udp_echo_gen bin/udp_echo; then
    if out=$(timeout 10 bin/epoll_gen udp 127.0.0.1 "$PORT" -c 4 -s 64 -d 1); then
        ok "epoll_gen udp vs udp_echo: $out"
    else
        fail "epoll_gen udp vs udp_echo: ${out:-no output}"
    fi
    stop_pid "$PID"
else
    fail "udp_echo_gen: no banner"
fi

if [ "$FAILS" -eq 0 ]; then echo "== all passed"; else echo "== $FAILS failure(s)"; fi
[ "$FAILS" -eq 0 ]
