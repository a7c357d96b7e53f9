"""Builds a Beam Python pipeline whose one splittable DoFn restriction is a
straggler: positions 0..N of an offset range, each costing M microseconds
(sleeping, so the harness's threads run in parallel), not split up front.
Writes the Pipeline proto (stages in a PROCESS environment running Beam's
own Python SDK harness) for `oxbeam run`; see bench/compare.py rebalance.

    python bench/python/beam_sdf_straggler.py --positions N --micros M --out pipeline.pb
"""
import argparse
import sys
import time

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.environments import ProcessEnvironment


class WholeRange(RestrictionProvider):
    def initial_restriction(self, n):
        return OffsetRange(0, n)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, n, restriction):
        return restriction.size()

    def split(self, n, restriction):
        yield restriction


class Slow(beam.DoFn):
    def __init__(self, micros):
        self.seconds = micros / 1e6

    def process(self, n, tracker=beam.DoFn.RestrictionParam(WholeRange())):
        pos = tracker.current_restriction().start
        while tracker.try_claim(pos):
            time.sleep(self.seconds)
            yield pos
            pos += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, required=True)
    ap.add_argument("--micros", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    p = beam.Pipeline()
    (p | beam.Create([args.positions]) | beam.ParDo(Slow(args.micros))
       | beam.combiners.Count.Globally())
    env = ProcessEnvironment(command="%s -m apache_beam.runners.worker.sdk_worker_main" % sys.executable)
    with open(args.out, "wb") as f:
        f.write(p.to_runner_api(default_environment=env).SerializeToString())


if __name__ == "__main__":
    main()
