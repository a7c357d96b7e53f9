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
import signal
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


if __name__ == "__main__":
    sys.exit(main())
