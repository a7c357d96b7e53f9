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
