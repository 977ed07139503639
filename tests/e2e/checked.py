"""The harness's serve and procs fixtures, plus one check at teardown: no process a
test started may have printed a sanitizer report (ASan, LSan, UBSan, TSan) on stderr.
A test module takes them with `from checked import serve, procs`."""
import re

import pytest

SANITIZER_RE = re.compile(r"(Address|Leak|Thread|UndefinedBehavior)Sanitizer|runtime error:")


def _checked(factory):
    started = []

    def start(*args, **kw):
        p = factory(*args, **kw)
        started.append(p)
        return p

    return start, started


def _stop_and_check(started, stop):
    reports = []
    for p in started:
        stop(p)
        m = SANITIZER_RE.search(p.stderr)
        if m:
            reports.append(f"{' '.join(p.argv)}:\n{p.stderr[max(0, m.start() - 200):]}")
    assert not reports, "sanitizer report:\n" + "\n".join(reports)


@pytest.fixture
def serve(serve):
    start, started = _checked(serve)
    yield start
    _stop_and_check(started, lambda p: p.stop())


@pytest.fixture
def procs(procs):
    start, started = _checked(procs)
    yield start
    _stop_and_check(started, lambda p: p.stop(timeout=5))
