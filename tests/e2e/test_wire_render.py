"""The seed's three figures drawn from a real loopback run (tests/helpers/wire_figures.c,
libsockflow's capture and ladder modules), checked as SVG text and rendered by headless
Chromium: the SVG text is the oracle, the screenshot proves it renders."""
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib

import pytest

from conftest import ROOT, SOCKFLOW, assert_no_sanitizer_report

SVG_NS = "{http://www.w3.org/2000/svg}"
HELPERS = os.environ.get("SOCKFLOW_HELPERS") or os.path.join(os.path.dirname(SOCKFLOW), "tests",
                                                             "helpers")
BAR_CLIENT, BAR_SERVER = (0x4a, 0x7b, 0xd0), (0xd0, 0x8a, 0x2a)


def chromium():
    path = shutil.which("chromium")
    if path is None:
        if os.geteuid() != 0:
            pytest.skip("chromium is not installed (tests/deps.sh installs it as root)")
        pytest.fail("chromium is not installed although tests/deps.sh runs as root")
    return path


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Run the helper once: the HTML file, its text ladders, and the parsed SVG figures."""
    helper = os.path.join(HELPERS, "wire_figures")
    if not os.access(helper, os.X_OK):
        pytest.fail(f"{helper} is not built: make {os.path.relpath(helper, ROOT)}")
    html = tmp_path_factory.mktemp("wire") / "figures.html"
    p = subprocess.run([helper, str(html)], capture_output=True, timeout=60)
    assert_no_sanitizer_report(p.stderr, "wire_figures")
    if p.returncode == 77:
        pytest.skip(p.stderr.decode().strip())
    assert p.returncode == 0, p.stderr.decode()
    text = html.read_text(encoding="utf-8")
    svgs = {}
    for m in re.finditer(r"<svg .*?</svg>", text, re.S):
        root = ET.fromstring(m.group(0))
        svgs[int(root.get("data-section"))] = root
    return html, p.stdout.decode(), svgs


def texts(svg, cls=None):
    """The text of each <text> element (with its tspans), in document order."""
    out = []
    for t in svg.iter(SVG_NS + "text"):
        if cls is None or t.get("class") == cls:
            out.append("".join(t.itertext()))
    return out


def index_of(items, prefix):
    for i, s in enumerate(items):
        if s.startswith(prefix):
            return i
    raise AssertionError(f"{prefix!r} not among {items}")


def test_three_figures_from_the_run(figures):
    _, ladders, svgs = figures
    assert sorted(svgs) == [1, 2, 7]
    for fig in ("== figure 1", "== figure 2", "== figure 7"):
        assert fig in ladders
    for line in ladders.splitlines():
        assert len(line) <= 100, line


def test_handshake_figure_order(figures):
    """Section 7: SYN J, SYN K ACK J+1, ACK K+1, all inside connect(), from real packets."""
    svg = figures[2][7]
    rows = texts(svg, "call") + texts(svg, "seglabel")
    order = [t for t in texts(svg) if t.split(" [")[0] in
             ("SYN J", "SYN K, ACK J+1", "ACK K+1") or t.startswith("connect")]
    names = [t.split(" [")[0] for t in order]
    start = index_of(names, "connect(")
    assert names[start + 1:start + 5] == ["SYN J", "SYN K, ACK J+1", "ACK K+1", "connect = 0"], names
    assert any(r.startswith("accept = ") for r in rows)
    legend = " ".join(texts(svg, "zh"))
    assert "TCP三次握手图" in legend
    assert "为一个套接字分配一个自由的本地端口号" in legend


def test_flow_figures_arrows_and_bars(figures):
    svgs = figures[2]
    tcp, udp = svgs[1], svgs[2]
    labels = [t.split(" [")[0] for t in texts(tcp, "seglabel")]
    assert "PSH J+1 len 5, ACK K+1" in labels and "PSH K+1 len 5, ACK J+6" in labels
    assert any(lab.startswith("FIN") for lab in labels)
    # One arrow per captured segment, one label each (the column heads are labels too).
    assert len(tcp.findall(f".//{SVG_NS}line[@class='seg']")) == len(labels) - 2
    bars = tcp.findall(f".//{SVG_NS}rect[@class='bar0']") + tcp.findall(f".//{SVG_NS}rect[@class='bar1']")
    assert len(bars) >= 10
    ulabels = [t.split(" [")[0] for t in texts(udp, "seglabel")]
    assert ulabels.count("UDP len 5") == 2
    assert not any("SYN" in lab for lab in ulabels)
    ucalls = " ".join(texts(udp, "call"))
    assert "sendto" in ucalls and "recvfrom" in ucalls and "listen" not in ucalls
    assert "而作为无连接的UDP协议" in " ".join(texts(udp, "zh"))


def png_pixels(path):
    """Width, height and rows of (r, g, b) tuples of an 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, prev, rows = zlib.decompress(idat), width * bpp, bytearray(width * bpp), []
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def test_renders_in_headless_chromium(figures, tmp_path):
    browser = chromium()
    html = figures[0]
    shot = tmp_path / "figures.png"
    p = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                        "--window-size=1040,1200", html.as_uri()],
                       capture_output=True, timeout=120)
    assert p.returncode == 0 and shot.exists(), p.stderr.decode()[-2000:]
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1040, 1200)
    colours = {}
    for row in rows[::2]:
        for px in row[::2]:
            colours[px] = colours.get(px, 0) + 1
    sampled = sum(colours.values())
    white = colours.get((255, 255, 255), 0)
    dark = sum(n for px, n in colours.items() if max(px) < 90)
    near = lambda want: sum(n for px, n in colours.items()
                            if all(abs(px[i] - want[i]) <= 8 for i in range(3)))
    assert white < sampled * 0.98, "the page is blank"
    assert dark > 2000, f"too little text or line drawn ({dark} dark samples)"
    # The bars of the first figure: both sides' colours are on screen.
    assert near(BAR_CLIENT) > 50 and near(BAR_SERVER) > 50, (near(BAR_CLIENT), near(BAR_SERVER))
