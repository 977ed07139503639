"""`make install PREFIX=... DESTDIR=...` puts the command, the libraries, the headers, the man
page and a pkg-config file in place, and a program builds against them with pkg-config."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, Server, tcp_exchange


@pytest.mark.skipif(shutil.which("pkg-config") is None, reason="pkg-config is not installed")
def test_install_and_build_against_it(tmp_path):
    dest = tmp_path / "root"
    # A release build, whatever the suite runs under (SAN=1 would reach a nested make).
    clean = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    subprocess.run(["make", "-s", "-C", ROOT, "install", "SAN=0", "PREFIX=/opt/sf", f"DESTDIR={dest}"],
                   check=True, stdout=subprocess.DEVNULL, timeout=300, env=clean)
    top = dest / "opt" / "sf"
    for f in ["bin/sockflow", "lib/libsockflow.a", "lib/libsockflow.so.0", "lib/libsockflow.so",
              "include/sockflow/sockflow.h", "share/man/man1/sockflow.1", "lib/pkgconfig/sockflow.pc"]:
        assert (top / f).exists(), f
    pc = (top / "lib/pkgconfig/sockflow.pc").read_text()
    assert "prefix=/opt/sf" in pc
    # pkg-config answers for the installed prefix; point it into DESTDIR to build here.
    env = dict(os.environ, PKG_CONFIG_PATH=str(top / "lib/pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=str(dest))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "sockflow"], env=env, check=True,
                           stdout=subprocess.PIPE, text=True).stdout.split()
    exe = tmp_path / "tcp_client"
    subprocess.run(["cc", "-o", str(exe), os.path.join(ROOT, "examples/tcp_client.c"), *flags],
                   check=True, timeout=120)
    srv = Server(["-t", "-4", "echo:0"], binary=str(top / "bin/sockflow"))
    try:
        out = subprocess.run([str(exe), "127.0.0.1", str(srv.port()), "installed"],
                             env=dict(os.environ, LD_LIBRARY_PATH=str(top / "lib")),
                             stdout=subprocess.PIPE, timeout=10, check=True).stdout
        assert out == b"installed"
    finally:
        assert srv.stop() == 0


def test_shared_library_exports_only_the_public_api():
    lib = os.path.join(os.path.dirname(os.environ["SOCKFLOW"]), "libsockflow.so")
    out = subprocess.run(["nm", "-D", "--defined-only", lib], stdout=subprocess.PIPE, text=True,
                         check=True, timeout=30).stdout
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert "sf_tcp_listen" in names and "sf_version" in names
    assert [n for n in names if not n.startswith("sf_") or n.startswith("sf__")] == []


def test_version_of_the_command_is_the_library_version():
    out = subprocess.run([os.environ["SOCKFLOW"], "--version"], stdout=subprocess.PIPE, text=True,
                         check=True, timeout=10).stdout
    hdr = open(os.path.join(ROOT, "include/sockflow/sockflow.h")).read()
    version = hdr.split('#define SOCKFLOW_VERSION "')[1].split('"')[0]
    assert out == f"sockflow {version}\n"
