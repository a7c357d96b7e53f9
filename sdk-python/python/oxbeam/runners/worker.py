"""An SDK harness process for Python stages: ``python -m oxbeam.runners.worker``.

With ``--direct_running_mode=multi_processing`` (and ``--direct_num_workers
N``), a pipeline's Python stages run in ``N`` such processes instead of the
pipeline's own, so Python user code uses ``N`` cores (one interpreter lock
each). The local runner starts them as the command of a Beam
``beam:env:process:v1`` environment, with Beam's boot flags
(``--id``, ``--control_endpoint``, ...), and sends them bundles over the
gRPC Fn API on 127.0.0.1; each runs them with the same Python executor the
in-process mode uses, and exits when the runner closes its control stream.
"""

import argparse
import gc
import json
import os
import signal
import stat
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m oxbeam.runners.worker", description=__doc__)
    ap.add_argument("--id", default="oxbeam-python-worker", help="worker id (Beam boot flag)")
    ap.add_argument("--control_endpoint", required=True, help="the runner's Fn API control endpoint")
    # Beam's other boot flags: this harness uses the control endpoint only.
    for flag in ("--logging_endpoint", "--artifact_endpoint", "--provision_endpoint",
                 "--semi_persist_dir"):
        ap.add_argument(flag)
    args, _ = ap.parse_known_args(argv)
    # Ctrl-C goes to the whole process group: the pipeline's process cancels
    # the job and stops its harnesses; a worker does not die on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from oxbeam import _oxbeam, _runtime

    _runtime.REMOTE = True
    from oxbeam.pipeline import _GC_THRESHOLD

    # As in the pipeline's process while it runs (see oxbeam.pipeline); the
    # modules loaded so far are never garbage: out of the collector's way.
    gc.set_threshold(max(gc.get_threshold()[0], _GC_THRESHOLD))
    gc.freeze()
    try:
        _oxbeam.serve_worker(args.control_endpoint, args.id)
    except Exception as e:  # noqa: BLE001 - reported to the runner via stderr
        print("oxbeam worker %s: %s" % (args.id, e), file=sys.stderr)
        return 1
    return 0


def fork_warm(command, count):
    """Starts ``count`` workers for ``command`` by forking this process, so
    they start with its imports (Oxbeam, the user's modules) done, in a few
    milliseconds instead of ~0.1 s; hands them to the runner's warm pool
    (``_oxbeam.adopt_worker``). Returns how many it forked: none where
    forking is not safe (not Linux; more than one thread, which a fork
    would leave behind holding their locks; ``OXBEAM_WORKER_START=spawn``),
    and the caller starts them as new processes instead."""
    if not sys.platform.startswith("linux") or os.environ.get(
        "OXBEAM_WORKER_START", "fork"
    ) != "fork":
        return 0
    try:
        if len(os.listdir("/proc/self/task")) != 1:
            return 0
    except OSError:
        return 0  # no /proc: the threads cannot be counted
    from oxbeam import _oxbeam

    # What this process has buffered is printed once, by it.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass  # None (no console), or closed
    forked = 0
    for _ in range(count):
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _forked_child(stdin_r, out_w, err_w)  # never returns
        for fd in (stdin_r, out_w, err_w):
            os.close(fd)
        try:
            _oxbeam.adopt_worker(command, pid, stdin_w, out_r, err_r)
        except ValueError:
            for fd in (stdin_w, out_r, err_r):
                os.close(fd)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        forked += 1
    return forked


def _forked_child(stdin, stdout, stderr):
    """A forked worker: waits for the runner's line on ``stdin`` (JSON
    ``env`` and ``argv``, as the warm shim of new processes reads it), then
    runs ``main``; exits without returning."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        _drop_inherited_channels()
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(0, 65536)
            if not chunk:
                break
            line += chunk
        if not line.strip():
            code = 0  # released unused
        else:
            spec = json.loads(line)
            os.environ.update(spec["env"])
            # As the shim: the run's PYTHONPATH (this process's sys.path
            # when it ran) after the script's directory.
            for entry in reversed(spec["env"].get("PYTHONPATH", "").split(os.pathsep)):
                if entry and entry not in sys.path:
                    sys.path.insert(1, entry)
            code = main(spec["argv"]) or 0
    except BaseException:  # noqa: BLE001 - reported on stderr, the runner shows it
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _drop_inherited_channels():
    """Points the pipes and sockets this fork inherited (other than its
    standard streams) at /dev/null: a process reading or accepting on the
    other end sees the parent's close as it would without the fork, and a
    descriptor number stays taken, so an object of the parent that still
    holds it cannot write into a file this worker opens later."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd <= 2 or fd == null:
                continue
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue  # the listing's own descriptor, now closed
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


if __name__ == "__main__":
    sys.exit(main())
