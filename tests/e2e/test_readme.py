"""The README's console examples, run as written: each `$ ` line is run with bash, the lines
under it are its exact output (stdout and stderr together). A command ending in ` &` runs
in the background until the end of its block; its lines are awaited, in any order. It is
then stopped with SIGTERM and must exit 0; a program of someone else's that has no handler
for SIGTERM (systemd-socket-activate -a) may instead die by it, as its default action.
Example ports (70xx) are replaced by free ports, since tests never use fixed ports."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import ROOT, SOCKFLOW, Proc

README = os.path.join(ROOT, "README.md")
PORT_RE = re.compile(r"\b70\d\d\b")


def console_blocks():
    text = open(README).read()
    return re.findall(r"```console\n(.*?)```", text, re.S)


def free_port():
    """A port free for both TCP and UDP on loopback right now."""
    while True:
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def parse(block):
    steps = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append([line[2:], []])
        else:
            steps[-1][1].append(line)
    return steps


def wait_either(p, pattern, timeout=5.0):
    """A background line on standard output or error (listen prints its 'listening on'
    line on error: its output is the client's bytes)."""
    deadline = time.monotonic() + timeout
    while True:
        for stream in ("out", "err"):
            try:
                return p.wait_line(pattern, timeout=0.05, stream=stream)
            except AssertionError:
                if time.monotonic() > deadline and stream == "err":
                    raise


@pytest.mark.parametrize("block", console_blocks())
def test_readme_example(block, tmp_path):
    ports = {}
    sub = lambda s: PORT_RE.sub(lambda m: str(ports.setdefault(m.group(0), free_port())), s)
    env = dict(os.environ, PATH=os.path.dirname(SOCKFLOW) + os.pathsep + os.environ["PATH"])
    background = []  # (command, Proc)
    try:
        for cmd, expected in parse(block):
            cmd, expected = sub(cmd), [sub(l) for l in expected]
            if cmd.endswith(" &"):
                p = Proc(["bash", "-c", "exec " + cmd[:-2]], env=env)
                background.append((cmd, p))
                for line in expected:
                    wait_either(p, "^" + re.escape(line) + "$", timeout=5)
                continue
            r = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, cwd=tmp_path, timeout=20)
            got = r.stdout.decode().splitlines()
            assert got == expected, f"{cmd!r}: got {got!r}, README says {expected!r}"
    finally:
        for cmd, p in background:
            rc = p.stop()
            ours = cmd.split()[0] == "sockflow"
            assert rc == 0 or (not ours and rc == -signal.SIGTERM), f"{cmd!r} ended with {rc}"
