"""Fixtures for running Beam Python pipelines against `oxbeam job-server`.

The session starts one job server (`oxbeam job-server --job_port 0`, endpoint
parsed from its first stdout line) and, for EXTERNAL environments, one Beam
worker pool; both are stopped at the end of the session.

Environment: OXBEAM_BIN (a built `oxbeam` binary; else `cargo build -p
oxbeam-cli` is run and the binary taken from CARGO_TARGET_DIR or ./target).
"""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _oxbeam_binary():
    if os.environ.get('OXBEAM_BIN'):
        return os.environ['OXBEAM_BIN']
    subprocess.run(['cargo', 'build', '-q', '-p', 'oxbeam-cli'], cwd=ROOT, check=True)
    target = os.environ.get('CARGO_TARGET_DIR', os.path.join(ROOT, 'target'))
    return os.path.join(target, 'debug', 'oxbeam')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc, endpoint):
        self.proc = proc
        self.endpoint = endpoint


@pytest.fixture(scope='session')
def job_server():
    binary = _oxbeam_binary()
    # Harnesses it starts itself (Beam Python's subprocess and embedded
    # environments) import this directory's modules and run on this Python.
    proc = subprocess.Popen(
        [binary, 'job-server', '--job_port', '0', '--log_level', 'warn',
         '--python', sys.executable],
        stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=worker_env())
    line = proc.stdout.readline()
    m = re.search(r'listening on (\S+):(\d+)', line)
    if not m:
        proc.kill()
        raise RuntimeError('oxbeam job-server did not print its endpoint: %r' % line)
    server = Server(proc, 'localhost:%s' % m.group(2))
    yield server
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def worker_env():
    """Environment for harness processes: they import this directory's
    modules (functions in the pipelines are pickled by reference)."""
    env = dict(os.environ)
    # Beam's worker pool starts harnesses with the `python` on PATH.
    env['PATH'] = os.pathsep.join([os.path.dirname(sys.executable), env.get('PATH', '')])
    env['PYTHONPATH'] = os.pathsep.join(
        [HERE] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    return env


@pytest.fixture(scope='session')
def worker_pool():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'apache_beam.runners.worker.worker_pool_main',
         '--service_port=%d' % port],
        env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    yield 'localhost:%d' % port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
