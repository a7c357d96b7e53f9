"""``--direct_running_mode=multi_processing``: Python stages in harness
processes (``python -m oxbeam.runners.worker``) over the gRPC Fn API.

Every test taking the ``B`` fixture also runs in this mode (see conftest);
these check what is particular to it, and the splittable text reading that
spreads a file over those processes."""

import collections
import gzip
import os
import re

import pytest

import oxbeam as beam
from oxbeam.io import textio
from oxbeam.options.pipeline_options import PipelineOptions
from oxbeam.testing.util import assert_that, equal_to

MP = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def test_python_stages_run_in_two_worker_processes():
    n = 50_000  # 13 chunks of Create, redistributed over both harnesses
    with beam.Pipeline(options=PipelineOptions(MP)) as p:
        xs = p | beam.Create(range(n))
        pids = (
            xs
            | "Pid" >> beam.Map(lambda x: (os.getpid(), x))
            | beam.combiners.Count.PerKey()
            | beam.Map(lambda kv: kv[0])
        )
        total = xs | beam.CombineGlobally(sum)

        driver = os.getpid()

        def check(ps):
            assert len(ps) == 2, ps
            assert driver not in ps

        assert_that(pids, check, label="TwoWorkers")
        assert_that(total, equal_to([n * (n - 1) // 2]), label="Sum")


def _warm_workers():
    """Pids of this process's children waiting as warm workers."""
    me = os.getpid()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"import oxbeam.runners.worker as harness" in cmdline:
            found.append(int(pid))
    return sorted(found)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_workers_start_with_the_pipeline_and_the_run_takes_them():
    import time

    p = beam.Pipeline(options=PipelineOptions(MP))
    deadline = time.monotonic() + 10
    warm = _warm_workers()
    while len(warm) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
        warm = _warm_workers()
    assert len(warm) == 2, warm
    pids = (
        p
        | beam.Create(range(20_000))
        | "Pid" >> beam.Map(lambda x: os.getpid())
        | beam.Distinct()
    )
    assert_that(pids, lambda ps: set(ps) <= set(warm) or pytest.fail(repr(ps)))
    p.run().wait_until_finish()
    # Taken by the run, then stopped with it: none is left waiting.
    assert _warm_workers() == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_workers_a_run_does_not_take_are_stopped():
    # A pipeline of no Python stage: its workers are not needed.
    p = beam.Pipeline(options=PipelineOptions(MP))
    p | beam.Impulse()
    p.run().wait_until_finish()
    assert _warm_workers() == []


@pytest.mark.parametrize("split", [True, False])
def test_a_straggling_bundle_is_split_for_the_idle_worker(split):
    # 150 elements of 10 ms each, unfused: the slow Map reads Create's one
    # chunk as one bundle, on one harness process. With dynamic splitting
    # the runner asks the busy harness for part of it (ProcessBundleSplit)
    # once it has run a while, and the other harness process runs what it
    # gives away.
    import time

    def slow(x):
        time.sleep(0.01)
        return os.getpid(), x

    options = MP + ["--no_fusion"] + ([] if split else ["--no_dynamic_splitting"])
    with beam.Pipeline(options=PipelineOptions(options)) as p:
        pairs = p | beam.Create(range(150)) | "Slow" >> beam.Map(slow)
        xs = pairs | "X" >> beam.Map(lambda kv: kv[1])
        pids = pairs | "Pid" >> beam.Map(lambda kv: kv[0]) | beam.Distinct()

        def check(ps):
            assert len(ps) == (2 if split else 1), ps

        assert_that(xs, equal_to(list(range(150))), label="Exact")
        assert_that(pids, check, label="Workers")


def test_a_bundle_of_slow_elements_is_split_between_them():
    # 6 elements of 300 ms each in one bundle: a split request arriving
    # while one of them runs cannot wait for the next element boundary (the
    # harness answers within 40 ms), so it is declined, and at that boundary
    # the executor sets the last half of the elements left aside for the
    # runner's next request to claim at once: the idle process gets two.
    # (Before, a request was taken only if it arrived within 40 ms of a
    # boundary: one in eight.)
    import time

    def slow(x):
        time.sleep(0.3)
        return os.getpid(), x

    def two_each(pids):
        shares = sorted(collections.Counter(pids).values())
        assert len(shares) == 2 and shares[0] >= 2, shares

    with beam.Pipeline(options=PipelineOptions(MP + ["--no_fusion"])) as p:
        pairs = p | beam.Create(range(6)) | "Slow" >> beam.Map(slow)
        xs = pairs | "X" >> beam.Map(lambda kv: kv[1])
        pids = pairs | "Pid" >> beam.Map(lambda kv: kv[0]) | beam.combiners.ToList()
        assert_that(xs, equal_to(list(range(6))), label="Exact")
        assert_that(pids, lambda lists: two_each(lists[0]), label="Workers")


def test_user_exception_from_a_worker_keeps_type_label_and_element():
    def boom(x):
        if x == 7:
            raise KeyError("no key %d" % x)
        return x

    with pytest.raises(KeyError) as info:
        with beam.Pipeline(options=PipelineOptions(MP)) as p:
            p | beam.Create(range(10)) | "Explode" >> beam.Map(boom)
    assert "no key 7" in str(info.value)
    assert info.value.transform == "Explode"
    assert info.value.element == "7"
    assert "in boom" in info.value.traceback_text
    assert "pickled exception" not in info.value.traceback_text


def test_unknown_running_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="direct_running_mode=threads"):
        with beam.Pipeline(options=PipelineOptions(["--direct_running_mode=threads"])) as p:
            p | beam.Create([1])


TEXTS = {
    "plain": "alpha beta\ngamma\n\ndelta epsilon zeta\neta\n",
    "no final newline": "one\ntwo three\nfour",
    "crlf": "a b\r\nc\r\n\r\nd e f\r\n",
    "long lines": "\n".join("w%d " % i * (i % 7) for i in range(60)) + "\n",
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("range_bytes", [1, 2, 3, 7, 64, 1 << 20])
def test_byte_ranges_read_every_line_once(tmp_path, monkeypatch, name, range_bytes):
    text = TEXTS[name]
    path = tmp_path / "in.txt"
    path.write_bytes(text.encode())
    monkeypatch.setattr(textio, "_RANGE_BYTES", range_bytes)
    expected = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    if expected and expected[-1] == "":
        expected.pop()
    with beam.Pipeline() as p:
        lines = p | beam.io.ReadFromText(str(path))
        assert_that(lines, equal_to(expected))


def test_a_file_is_cut_into_equal_ranges(tmp_path):
    # As few ranges as fit the limit, differing by a byte at most: a short
    # last range would leave one worker idle while another reads a full one.
    path = str(tmp_path / "f.txt")
    for size, most, sizes in [(10, 4, [3, 3, 4]), (12, 4, [4, 4, 4]), (9, 9, [9]),
                              (41, 4, [3, 4, 4, 3, 4, 4, 4, 3, 4, 4, 4])]:
        with open(path, "wb") as f:
            f.write(b"x" * size)
        got = textio._SplitIntoRanges("auto", most)(path)
        assert [b - a for _, a, b in got] == sizes, (size, most, got)
        assert got[0][1] == 0 and got[-1][2] == size
        assert all(x[2] == y[1] for x, y in zip(got, got[1:]))


@pytest.mark.parametrize("range_bytes", [5, 1 << 20])
def test_header_lines_are_skipped_once_per_file_and_gzip_is_one_range(
    tmp_path, monkeypatch, range_bytes
):
    (tmp_path / "a.csv").write_text("h\n1\n2\n3\n")
    with gzip.open(tmp_path / "b.csv.gz", "wt") as f:
        f.write("h\n4\n5\n")
    monkeypatch.setattr(textio, "_RANGE_BYTES", range_bytes)
    with beam.Pipeline() as p:
        lines = p | beam.io.ReadFromText(str(tmp_path / "*.csv*"), skip_header_lines=1)
        assert_that(lines, equal_to(["1", "2", "3", "4", "5"]))


def test_wordcount_over_many_ranges_in_worker_processes(tmp_path, monkeypatch):
    words = ["w%d" % (i * 7919 % 503) for i in range(40_000)]
    text = "\n".join(" ".join(words[i : i + 9]) for i in range(0, len(words), 9)) + "\n"
    path = tmp_path / "in.txt"
    path.write_text(text)
    monkeypatch.setattr(textio, "_RANGE_BYTES", 4096)  # ~60 ranges
    expected = collections.Counter(re.findall(r"[\w']+", text))
    with beam.Pipeline(options=PipelineOptions(MP)) as p:
        counts = (
            p
            | beam.io.ReadFromText(str(path))
            | beam.FlatMap(lambda line: re.findall(r"[\w']+", line))
            | beam.combiners.Count.PerElement()
        )
        assert_that(counts, equal_to(sorted(expected.items())))


def test_worker_output_is_echoed_while_the_job_runs(capfd):
    """What user code prints in a worker process reaches the driver's
    stderr, prefixed with the worker; after the job nothing more does."""

    def shout(x):
        print("shouting %d" % x, flush=True)
        return x

    with beam.Pipeline(options=PipelineOptions(MP)) as p:
        assert_that(p | beam.Create([7]) | beam.Map(shout), equal_to([7]))
    err = capfd.readouterr().err
    assert re.search(r"^\[python-\d+\] shouting 7$", err, re.M), err
    assert "cannot connect" not in err, err


# Workers forked from the pipeline's process. Pytest's process has other
# threads (Beam's, imported for the comparisons), where forking is not safe
# and workers start as new processes: these run scripts in a fresh process.
FORK_SCRIPT = r'''
import os, sys, threading, time, types
import oxbeam as beam
from oxbeam.options.pipeline_options import PipelineOptions
from oxbeam.testing.util import assert_that, equal_to

# Only a fork of this process has it (a new process would not import it).
mark = types.ModuleType("oxbeam_fork_mark")
sys.modules["oxbeam_fork_mark"] = mark
mode = sys.argv[1]
if mode == "thread":
    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
driver = os.getpid()
MP = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]

def children():
    """Pids of this process's children (zombies included)."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % pid) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == driver:
                    out.append(int(pid))
        except (OSError, ValueError, IndexError):
            pass
    return out

if mode == "unused":
    # Another process reads a pipe of this one's until it closes; forked
    # workers waiting for a run must not hold it open.
    import subprocess
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    p = beam.Pipeline(options=PipelineOptions(MP))
    cat.stdin.close()
    cat.wait(timeout=10)
    p | beam.Impulse()
    p.run().wait_until_finish()
    assert children() == [], children()
    print("RESULT released")
    sys.exit(0)

def where(x):
    return ("oxbeam_fork_mark" in sys.modules, os.getppid() == driver, os.getpid() != driver)

def shout(x):
    print("forked worker says %d" % x, flush=True)
    return x

with beam.Pipeline(options=PipelineOptions(MP)) as p:
    xs = p | beam.Create(range(3000))
    seen = xs | "Where" >> beam.Map(where) | beam.Distinct()
    assert_that(xs | "Sum" >> beam.CombineGlobally(sum), equal_to([3000 * 2999 // 2]), label="Sum")
    assert_that(p | "One" >> beam.Create([5]) | beam.Map(shout), equal_to([5]), label="Shout")
    seen | beam.Map(lambda s: print("RESULT %s %s %s" % s, file=sys.stderr, flush=True))
if mode == "error":
    def boom(x):
        if x == 3:
            raise KeyError("no key %d" % x)
        return x
    try:
        with beam.Pipeline(options=PipelineOptions(MP)) as p:
            p | beam.Create(range(5)) | "Explode" >> beam.Map(boom)
    except KeyError as e:
        assert e.transform == "Explode" and "in boom" in e.traceback_text, e.traceback_text
        print("RESULT raised", file=sys.stderr)
time.sleep(0.2)
assert children() == [], children()
'''


def _run_fork_script(tmp_path, mode, start=None):
    import subprocess
    import sys

    script = tmp_path / "fork_workers.py"
    script.write_text(FORK_SCRIPT)
    env = dict(os.environ)
    env.pop("OXBEAM_WORKER_START", None)
    if start:
        env["OXBEAM_WORKER_START"] = start
    done = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    return sorted(set(ln for ln in out.splitlines() if "RESULT" in ln)), out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="forks only on Linux")
def test_workers_are_forked_from_the_pipeline_process_with_its_modules(tmp_path):
    results, out = _run_fork_script(tmp_path, "plain")
    # Every element ran in a child of the driver that has the driver's
    # modules; none is left after the run (reaped, not zombies).
    assert results == ["[python-1] RESULT True True True"] or results == [
        "[python-2] RESULT True True True"], out
    assert re.search(r"^\[python-\d+\] forked worker says 5$", out, re.M), out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="forks only on Linux")
@pytest.mark.parametrize("mode,start", [("plain", "spawn"), ("thread", None)])
def test_workers_start_as_new_processes_where_forking_is_not_safe_or_not_wanted(
    tmp_path, mode, start
):
    # OXBEAM_WORKER_START=spawn, or another thread running when the
    # Pipeline is made: new processes, without the driver's modules.
    results, out = _run_fork_script(tmp_path, mode, start)
    assert [r.split("] ", 1)[1] for r in results] == ["RESULT False True True"], out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="forks only on Linux")
def test_forked_workers_a_run_does_not_take_are_reaped_and_hold_no_pipe(tmp_path):
    results, out = _run_fork_script(tmp_path, "unused")
    assert results == ["RESULT released"], out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="forks only on Linux")
def test_user_exception_from_a_forked_worker_reaches_the_driver(tmp_path):
    results, out = _run_fork_script(tmp_path, "error")
    assert "RESULT raised" in results, out
