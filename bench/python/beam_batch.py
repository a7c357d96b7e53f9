"""Beam Python peers of Oxbeam's batch benchmarks (B1 chain, B2 GroupByKey,
B3 wordcount), run on Beam's default batch runner (DirectRunner, which is the
FnApiRunner for batch).

Prints one JSON line: {"workload", "elements", "seconds"}; `bench/run`
measures wall time and peak memory from outside as well.
"""
import argparse
import json
import re
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


def chain(p, n, stages):
    pc = p | beam.Create(range(n), reshuffle=False) | "Payload" >> beam.Map(lambda i: b"x" * 100)
    for s in range(stages):
        pc = pc | f"Map{s}" >> beam.Map(lambda x: x)
    return pc | beam.combiners.Count.Globally()


def gbk(p, n, keys):
    return (p
            | beam.Create(range(n), reshuffle=False)
            | beam.Map(lambda i: (i % keys, i))
            | beam.GroupByKey()
            | beam.MapTuple(lambda k, vs: sum(1 for _ in vs))
            | beam.CombineGlobally(sum))


def wordcount(p, path, out):
    return (p
            | beam.io.ReadFromText(path)
            | beam.FlatMap(lambda line: re.findall(r"[A-Za-z']+", line))
            | beam.combiners.Count.PerElement()
            | beam.MapTuple(lambda w, c: "%s: %d" % (w, c))
            | beam.io.WriteToText(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["chain", "gbk", "wordcount"])
    ap.add_argument("--elements", type=int, default=1_000_000)
    ap.add_argument("--stages", type=int, default=10)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--input")
    ap.add_argument("--output", default="/tmp/oxbeam-bench-beam-wc")
    args = ap.parse_args()
    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        if args.workload == "chain":
            chain(p, args.elements, args.stages)
        elif args.workload == "gbk":
            gbk(p, args.elements, args.keys)
        else:
            wordcount(p, args.input, args.output)
    print(json.dumps({"workload": args.workload, "elements": args.elements,
                      "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
