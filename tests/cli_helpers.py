"""What the end-to-end tests share: the installed `genie-long` run in a subprocess, and the shape of a user error."""
import os, shutil, subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / 'nbs' / 'fixtures' / 'structures'
EXE = shutil.which('genie-long') or pytest.fail('the genie-long script is not installed (pip install -e .)')
ENV = {**os.environ, 'GENIE_LONG_DEBUG': '', 'OMP_NUM_THREADS': '1'}   # one thread: bitwise-repeatable runs


def run(*args, cwd=None, timeout=600, **kw):
    "Run `genie-long ARGS…` to completion; returns the `CompletedProcess` (text stdout and stderr)."
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=ENV,
                          **kw)


def start(*args, **kw) -> subprocess.Popen:
    "Start `genie-long ARGS…` in the background (stdout discarded, stderr kept)."
    return subprocess.Popen([EXE, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ENV, **kw)


def assert_user_error(r, *needles):
    "Exit status 2, one line on stderr that names the culprit, and no traceback."
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert 'Traceback' not in r.stderr + r.stdout, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles: assert n in r.stderr, (n, r.stderr)
