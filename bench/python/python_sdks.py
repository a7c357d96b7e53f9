"""One Python-SDK workload on one SDK, for `bench/run python`.

    python bench/python/python_sdks.py SDK WORKLOAD [--elements N] [--input F] [--output F]

SDK: ``oxbeam`` (Python stages in this process), ``oxbeam-mp`` (in
``--direct_num_workers`` harness processes, ``multi_processing``),
``beam`` (apache-beam DirectRunner = FnApiRunner, in this process), or
``bytewax`` (one worker, ``bytewax.testing.run_main``).

WORKLOAD: ``chain``, 10 ``Map(x + 1)`` stages over N ints then a global
count; ``wordcount``, Beam's wordcount (ReadFromText, split on
``[\\w']+``, pair with 1, sum per word, format ``word: count``, write).

Prints one JSON line: seconds (pipeline construction and run, imports
excluded), rate (elements or words per second), and a check value (the
count; the counts file's digest) that must agree across SDKs.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import time

WORD = re.compile(r"[\w']+", re.UNICODE)


def beam_like(sdk, workers):
    if sdk == "beam":
        import logging

        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions

        logging.getLogger("apache_beam").setLevel(logging.ERROR)
        return beam, PipelineOptions([])
    import oxbeam as beam
    from oxbeam.options.pipeline_options import PipelineOptions

    args = []
    if sdk == "oxbeam-mp":
        args = ["--direct_running_mode=multi_processing", "--direct_num_workers=%d" % workers]
    return beam, PipelineOptions(args)


def beam_chain(beam, options, n, result):
    with beam.Pipeline(options=options) as p:
        pc = p | beam.Create(range(n))
        for i in range(10):
            pc = pc | ("Map%d" % i) >> beam.Map(lambda x: x + 1)
        counted = pc | beam.combiners.Count.Globally()
        counted | beam.Map(_write_number, result)


def _write_number(x, path):
    with open(path, "w") as f:
        f.write(str(x))


def beam_wordcount(beam, options, inp, out):
    class Split(beam.DoFn):
        def process(self, element):
            return WORD.findall(element)

    with beam.Pipeline(options=options) as p:
        (
            p
            | beam.io.ReadFromText(inp)
            | "Split" >> beam.ParDo(Split()).with_output_types(str)
            | "PairWithOne" >> beam.Map(lambda x: (x, 1))
            | "GroupAndSum" >> beam.CombinePerKey(sum)
            | "Format" >> beam.MapTuple(lambda w, c: "%s: %d" % (w, c))
            | "Write" >> beam.io.WriteToText(out)
        )


def bytewax_chain(n):
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    flow = Dataflow("chain")
    s = op.input("in", flow, TestingSource(range(n), batch_size=4096))
    for i in range(10):
        s = op.map("map%d" % i, s, lambda x: x + 1)
    counted = op.count_final("count", s, lambda _x: "all")
    got = []
    op.output("out", counted, TestingSink(got))
    run_main(flow)
    return got[0][1]


def bytewax_wordcount(inp, out):
    import bytewax.operators as op
    from bytewax.connectors.files import FileSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    flow = Dataflow("wordcount")
    lines = op.input("in", flow, FileSource(inp))
    words = op.flat_map("split", lines, WORD.findall)
    counts = op.count_final("count", words, lambda w: w)
    got = []
    op.output("out", op.map("format", counts, lambda kv: "%s: %d" % kv), TestingSink(got))
    run_main(flow)
    with open(out + "-00000-of-00001", "w") as f:
        f.write("\n".join(got) + "\n")


def digest(prefix):
    """The counts files' lines, sorted, hashed (shard layout aside)."""
    d = os.path.dirname(prefix) or "."
    base = os.path.basename(prefix)
    lines = []
    for name in sorted(os.listdir(d)):
        if name.startswith(base):
            with open(os.path.join(d, name)) as f:
                lines.extend(ln for ln in f.read().splitlines() if ln)
    lines.sort()
    return "%d lines, sha1 %s" % (len(lines), hashlib.sha1("\n".join(lines).encode()).hexdigest()[:12])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sdk", choices=["oxbeam", "oxbeam-mp", "beam", "bytewax"])
    ap.add_argument("workload", choices=["chain", "wordcount"])
    ap.add_argument("--elements", type=int, default=1_000_000, help="chain: ints")
    ap.add_argument("--words", type=int, default=0, help="wordcount: words in --input (for the rate)")
    ap.add_argument("--input", help="wordcount: the text file")
    ap.add_argument("--output", help="wordcount: output prefix; chain: file for the count")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="oxbeam-mp: processes")
    args = ap.parse_args()
    if args.sdk != "bytewax":
        beam, options = beam_like(args.sdk, args.workers)
    start = time.perf_counter()
    if args.workload == "chain":
        if args.sdk == "bytewax":
            check = bytewax_chain(args.elements)
        else:
            beam_chain(beam, options, args.elements, args.output)
            with open(args.output) as f:
                check = int(f.read())
        n = args.elements
    else:
        if args.sdk == "bytewax":
            bytewax_wordcount(args.input, args.output)
        else:
            beam_wordcount(beam, options, args.input, args.output)
        n = args.words
    seconds = time.perf_counter() - start
    if args.workload == "wordcount":
        check = digest(args.output)
    print(json.dumps({"sdk": args.sdk, "workload": args.workload, "seconds": seconds,
                      "rate": n / seconds, "check": check}))


if __name__ == "__main__":
    sys.exit(main())
