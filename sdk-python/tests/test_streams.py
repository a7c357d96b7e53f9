"""Oxbeam's own sources and sink from Python (``oxbeam.io.streams``): the
Generate source, and Redis Streams read and written by real jobs against a
``redis-server`` started on 127.0.0.1 with a temporary directory (installed
by ``scripts/test``). Oxbeam only: Beam has no such transforms."""

import shutil
import socket
import subprocess
import time

import pytest

import oxbeam as beam
from oxbeam.io.streams import Generate, ReadFromRedisStream, WriteToRedisStream
from oxbeam.testing.util import assert_that, equal_to


def test_generate_bounded_emits_every_sequence_number_once():
    with beam.Pipeline() as p:
        events = p | Generate(keys=10, num_elements=1000, seed=7)
        assert_that(events | beam.Map(lambda kv: kv[1]), equal_to(list(range(1000))))
        keys = events | beam.Map(lambda kv: kv[0]) | beam.Distinct()
        assert_that(keys, equal_to(list(range(10))), label="Keys")


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="keys must be at least 1"):
        Generate(keys=0)
    with pytest.raises(ValueError, match="num_elements must be positive"):
        Generate(num_elements=0)


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (scripts/test installs it: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start on port %d" % port)
            time.sleep(0.05)
    yield "redis://127.0.0.1:%d/" % port
    proc.kill()
    proc.wait()


def test_redis_streams_round_trip_through_three_jobs(redis_url):
    # Job 1 writes 50 entries; job 2 reads them, upper-cases and writes
    # another stream; job 3 reads that one back.
    with beam.Pipeline() as p:
        (p | Generate(keys=3, num_elements=50)
           | beam.Map(lambda kv: "e%d" % kv[1]).with_output_types(str)
           | WriteToRedisStream(redis_url, "in"))
    with beam.Pipeline() as p:
        (p | ReadFromRedisStream(redis_url, "in", stop_at_end=True)
           | beam.Map(lambda kv: kv[1].upper()).with_output_types(bytes)
           | WriteToRedisStream(redis_url, "out"))
    with beam.Pipeline() as p:
        entries = p | ReadFromRedisStream(redis_url, "out", stop_at_end=True)
        assert_that(entries | beam.Map(lambda kv: kv[1]), equal_to([b"E%d" % i for i in range(50)]))


def test_redis_read_resumes_after_its_checkpoint(redis_url):
    with beam.Pipeline() as p:
        (p | Generate(num_elements=5) | beam.Map(lambda kv: "a%d" % kv[1]).with_output_types(str)
           | WriteToRedisStream(redis_url, "log"))
    with beam.Pipeline() as p:
        (p | ReadFromRedisStream(redis_url, "log", checkpoint_key="log:copied", stop_at_end=True)
           | beam.Map(lambda kv: kv[1]).with_output_types(bytes)
           | WriteToRedisStream(redis_url, "copy"))
    with beam.Pipeline() as p:
        (p | Generate(num_elements=3) | beam.Map(lambda kv: "b%d" % kv[1]).with_output_types(str)
           | WriteToRedisStream(redis_url, "log"))
    # The same job again: it resumes after the five entries it committed.
    with beam.Pipeline() as p:
        (p | ReadFromRedisStream(redis_url, "log", checkpoint_key="log:copied", stop_at_end=True)
           | beam.Map(lambda kv: kv[1]).with_output_types(bytes)
           | WriteToRedisStream(redis_url, "copy"))
    with beam.Pipeline() as p:
        copied = p | ReadFromRedisStream(redis_url, "copy", stop_at_end=True) | beam.Map(lambda kv: kv[1])
        assert_that(copied, equal_to([b"a0", b"a1", b"a2", b"a3", b"a4", b"b0", b"b1", b"b2"]))


def test_write_to_redis_needs_bytes_or_str():
    with pytest.raises(TypeError, match="WriteToRedisStream writes bytes or str elements"):
        with beam.Pipeline() as p:
            p | beam.Create([1, 2]) | WriteToRedisStream("redis://127.0.0.1:1/", "s")


# A stateful streaming job: a running count per key in user state, and
# counts per key in 100 ms fixed windows (a GroupByKey's state).
_STATEFUL_JOB = r'''
import sys, time
import oxbeam as beam
from oxbeam.coders import VarIntCoder
from oxbeam.io.streams import ReadFromRedisStream, WriteToRedisStream
from oxbeam.transforms.userstate import ReadModifyWriteStateSpec

url, bounded = sys.argv[1], sys.argv[2] == "bounded"


class Running(beam.DoFn):
    COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, kv, count=beam.DoFn.StateParam(COUNT)):
        n = (count.read() or 0) + 1
        count.write(n)
        yield "%s#%d" % (kv[0], n)


def slow_key(kv):
    time.sleep(0.0005)
    return (kv[1].decode(), 1)


with beam.Pipeline() as p:
    keyed = (p | ReadFromRedisStream(url, "in", checkpoint_key="ckpt", batch_size=25, stop_at_end=bounded)
               | beam.Map(slow_key))
    (keyed | beam.ParDo(Running()).with_output_types(str) | "Out" >> WriteToRedisStream(url, "out"))
    (keyed | beam.WindowInto(beam.window.FixedWindows(0.1)) | beam.CombinePerKey(sum)
           | beam.MapTuple(lambda k, n: "%s=%d" % (k, n)).with_output_types(str)
           | "Wins" >> WriteToRedisStream(url, "wins"))
'''


def _redis_cli(url, *args):
    port = url.rstrip("/").rsplit(":", 1)[1]
    out = subprocess.run(["redis-cli", "-p", port, *args], check=True, capture_output=True, text=True)
    return out.stdout


def _add_keyed_entries(url, lo, hi):
    # Entry i: id <10 + i // 5>-<i % 5> (event time 10 + i // 5 ms), data k<i % 4>.
    cmds = "".join("XADD in %d-%d data k%d\n" % (10 + i // 5, i % 5, i % 4) for i in range(lo, hi))
    port = url.rstrip("/").rsplit(":", 1)[1]
    subprocess.run(["redis-cli", "-p", port], input=cmds, check=True, capture_output=True, text=True)


def _stream(url, name):
    """The ``data`` of every entry of stream ``name``, in order."""
    lines = _redis_cli(url, "XRANGE", name, "-", "+").splitlines()
    assert lines[1::3] == ["data"] * (len(lines) // 3)
    return lines[2::3]


def test_a_killed_stateful_python_job_restarts_exactly_once(redis_url, tmp_path):
    """User state and window state are committed with the offsets: a job
    killed mid-stream and restarted emits every running count and every
    window count exactly once."""
    import sys

    script = tmp_path / "job.py"
    script.write_text(_STATEFUL_JOB)
    _add_keyed_entries(redis_url, 0, 2000)
    child = subprocess.Popen([sys.executable, str(script), redis_url, "unbounded"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while int(_redis_cli(redis_url, "XLEN", "out")) < 700:
        assert child.poll() is None, child.stderr.read().decode()
        assert time.time() < deadline, "no output after 120 s"
        time.sleep(0.01)
    child.kill()
    child.wait()
    partial = int(_redis_cli(redis_url, "XLEN", "out"))
    assert 700 <= partial < 2000
    assert int(_redis_cli(redis_url, "EXISTS", "ckpt:state")) == 1
    _add_keyed_entries(redis_url, 2000, 2400)
    subprocess.run([sys.executable, str(script), redis_url, "bounded"], check=True)

    per_key = {}
    for r in _stream(redis_url, "out"):
        k, n = r.split("#")
        per_key.setdefault(k, []).append(int(n))
    assert sorted(per_key) == ["k0", "k1", "k2", "k3"]
    for k, counts in per_key.items():
        assert counts == list(range(1, 601)), k
    want = {}
    for i in range(2400):
        key = ("k%d" % (i % 4), (10 + i // 5) // 100)
        want[key] = want.get(key, 0) + 1
    assert sorted(_stream(redis_url, "wins")) == sorted("%s=%d" % (k, n) for (k, _), n in want.items())
    assert int(_redis_cli(redis_url, "EXISTS", "ckpt:state")) == 0


def test_watch_files_reads_each_new_file_once(tmp_path):
    import os
    import threading

    from oxbeam.io.streams import WatchFiles

    def put(name, text):
        tmp = tmp_path / ("." + name)
        tmp.write_text(text)
        os.rename(tmp, tmp_path / name)

    put("a.txt", "a0\na1\n")
    later = threading.Timer(0.2, lambda: put("b.txt", "b0\r\nb1"))
    later.start()
    try:
        with beam.Pipeline() as p:
            lines = p | WatchFiles(str(tmp_path / "*.txt"), poll_interval=0.02, stop_after_idle=0.6)
            assert_that(lines, equal_to(["a0", "a1", "b0", "b1"]))
            counted = (lines | beam.Map(lambda line: line[0])
                       | beam.combiners.Count.PerElement())
            assert_that(counted, equal_to([("a", 2), ("b", 2)]), label="PerFile")
    finally:
        later.cancel()
    with pytest.raises(ValueError, match="max_files must be at least 1"):
        WatchFiles("x", max_files=0)


def test_watch_files_names_a_file_that_is_not_utf8(tmp_path):
    from oxbeam.io.streams import WatchFiles

    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(Exception, match="file-watching source .* at %s: line 2 is not UTF-8"
                       % str(tmp_path / "bad.txt").replace(".", r"\.")):
        with beam.Pipeline() as p:
            p | WatchFiles(str(tmp_path / "*.txt"), max_files=1)
