"""Submission-to-result latency of a tiny Beam Python pipeline (Create of 3
elements -> Map -> assert_that) on a running job server, LOOPBACK.

Times `p.run()` through `wait_until_finish()` (the Python client's own start
and the pipeline's construction are excluded), `--runs` times after one
warm-up, with Beam's default client options and with
`--experiments=disable_logging_submission_environment` (which skips the
client's `pip freeze`, ~0.25 s of every PortableRunner submission).

Prints one JSON line: {"default": {...}, "no_pip_freeze": {...}} with best
and median seconds of each.
"""
import argparse
import json
import statistics
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to


def one(options):
    p = beam.Pipeline(options=options)
    assert_that(p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2), equal_to([2, 4, 6]))
    start = time.perf_counter()
    p.run().wait_until_finish()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--job_endpoint", required=True)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    base = ["--runner=PortableRunner", "--job_endpoint=" + args.job_endpoint,
            "--environment_type=LOOPBACK"]
    out = {}
    for name, extra in [("default", []),
                        ("no_pip_freeze", ["--experiments=disable_logging_submission_environment"])]:
        options = PipelineOptions(base + extra)
        one(options)  # warm-up
        times = [one(options) for _ in range(args.runs)]
        out[name] = {"best": min(times), "median": statistics.median(times), "runs": len(times)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
