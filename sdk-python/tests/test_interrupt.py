"""Ctrl-C during ``Pipeline.run()``: a real SIGINT sent to a child process.

A batch job is cancelled: ``run()`` raises ``KeyboardInterrupt`` promptly
(also while user code is running on worker threads), no output shard is
written, no thread is left behind, and the interpreter can run pipelines
again. A streaming job is drained by the first Ctrl-C and cancelled by the
second. Oxbeam only (apache-beam's DirectRunner is not the subject here).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# How long after SIGINT the child must have stopped (measured: ~0.1 s).
STOP_WITHIN = 2.0

PRELUDE = textwrap.dedent(
    """
    import os, sys, threading, time
    import oxbeam as beam

    out, marker = sys.argv[1], sys.argv[2]

    def os_threads():
        return len(os.listdir("/proc/self/task"))

    def threads_left(before):
        # A joined thread's /proc entry may outlive the join for a moment
        # (the kernel reaps it just after): allow it a second to go.
        deadline = time.monotonic() + 1
        while os_threads() > before and time.monotonic() < deadline:
            time.sleep(0.01)
        return os_threads() - before

    _told = []

    def started():
        # Tells the parent that user code runs on the job's workers, once:
        # a file check per element would release the interpreter lock
        # between elements, and CPython hands a lock released that briefly
        # straight back to the same thread, so the main thread (which
        # notices Ctrl-C) could wait seconds for it (the GIL convoy).
        if not _told:
            _told.append(True)
            if not os.path.exists(marker):
                open(marker, "w").close()

    def slow(x):
        started()
        time.sleep(0.01)
        return x

    def busy(x):
        started()
        s = 0
        for i in range(200000):
            s += i
        return x
    """
)


def _run_child(tmp_path, body, interrupts=1, gap=0.5):
    """Runs PRELUDE + body in a child; once its user code runs, sends it
    ``interrupts`` SIGINTs ``gap`` s apart. Returns (returncode, stdout,
    stderr, seconds from the last SIGINT to exit, out dir)."""
    out = tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "started"
    script = tmp_path / "child.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    child = subprocess.Popen(
        [sys.executable, str(script), str(out / "result"), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child's user code never ran"
            time.sleep(0.02)
        time.sleep(0.5)
        for i in range(interrupts):
            if i:
                time.sleep(gap)
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
        elapsed = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, stdout, stderr, elapsed, out


BATCH_JOB = """
    with beam.Pipeline() as p:
        (p | beam.Create(range(100000)) | beam.Map({fn}) | beam.Map(str)
         | beam.io.WriteToText(out))
    print("finished")
"""


def test_ctrl_c_cancels_batch_job_with_keyboard_interrupt(tmp_path):
    code, stdout, stderr, elapsed, out = _run_child(tmp_path, BATCH_JOB.format(fn="slow"))
    # The uncaught KeyboardInterrupt: Python's traceback, then it exits
    # killed by SIGINT, as any Python program interrupted by Ctrl-C.
    assert code == -signal.SIGINT, (code, stderr)
    assert stdout == ""
    assert stderr.startswith("Traceback (most recent call last):"), stderr
    assert stderr.rstrip("\n").splitlines()[-1] == "KeyboardInterrupt", stderr
    assert "oxbeam" not in stderr.splitlines()[-1]
    assert elapsed < STOP_WITHIN, elapsed
    # Neither shards nor temp files of the cancelled job.
    assert sorted(os.listdir(out)) == []


def test_ctrl_c_interrupts_busy_user_code_and_interpreter_runs_again(tmp_path):
    body = """
    before = os_threads()
    t0 = time.monotonic()
    try:
        with beam.Pipeline() as p:
            (p | beam.Create(range(100000)) | beam.Map(busy) | beam.Map(str)
             | beam.io.WriteToText(out))
        print("finished")
    except KeyboardInterrupt:
        print("interrupted")
    print("threads left:", threads_left(before), [t.name for t in threading.enumerate()])
    with beam.Pipeline() as p:
        (p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2)
         | beam.io.WriteToText(out + "-again"))
    with open(out + "-again-00000-of-00001") as f:
        print("again:", sorted(int(l) for l in f))
    """
    code, stdout, stderr, elapsed, out = _run_child(tmp_path, body)
    assert (code, stderr) == (0, "")
    assert stdout == (
        "interrupted\n"
        "threads left: 0 ['MainThread']\n"
        "again: [2, 4, 6]\n"
    )
    # Exit includes the second pipeline (and nothing waits for the busy
    # batch of 2048 elements, ~40 s of user code, to finish).
    assert elapsed < STOP_WITHIN, elapsed
    assert sorted(os.listdir(out)) == ["result-again-00000-of-00001"]


STREAMING_JOB = """
    from oxbeam.options.pipeline_options import PipelineOptions
    from oxbeam.testing.test_stream import TestStream
    from oxbeam.utils.timestamp import Timestamp

    events = TestStream()
    for i in range(400):
        events = events.add_elements([beam.window.TimestampedValue(i, i)])
        events = events.advance_watermark_to(Timestamp(i + 1))
    opts = PipelineOptions(["--streaming"])
    try:
        with beam.Pipeline(options=opts) as p:
            (p | events | beam.Map(slow) | beam.WindowInto(beam.window.GlobalWindows())
             | beam.combiners.Count.Globally().without_defaults() | beam.Map(str)
             | beam.io.WriteToText(out))
        print("drained")
    except KeyboardInterrupt:
        print("interrupted")
    """


def test_first_ctrl_c_drains_a_streaming_job(tmp_path):
    code, stdout, stderr, elapsed, out = _run_child(tmp_path, STREAMING_JOB)
    assert (code, stdout) == (0, "drained\n"), stderr
    assert stderr == "oxbeam: draining the pipeline (Ctrl-C again to cancel)\n"
    assert elapsed < STOP_WITHIN, elapsed
    # Drained: what was read is counted and written, the rest never read.
    assert sorted(os.listdir(out)) == ["result-00000-of-00001"]
    count = int((out / "result-00000-of-00001").read_text())
    assert 0 < count < 400, count


def test_second_ctrl_c_cancels_a_streaming_job(tmp_path):
    # 1000 elements per event: draining would take ~10 s of user code.
    body = STREAMING_JOB.replace(
        "[beam.window.TimestampedValue(i, i)]",
        "[beam.window.TimestampedValue(j, i) for j in range(1000)]")
    code, stdout, stderr, elapsed, out = _run_child(tmp_path, body, interrupts=2, gap=0.2)
    assert (code, stdout) == (0, "interrupted\n"), stderr
    assert stderr == "oxbeam: draining the pipeline (Ctrl-C again to cancel)\n"
    assert elapsed < STOP_WITHIN, elapsed
    assert sorted(os.listdir(out)) == []
