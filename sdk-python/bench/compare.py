"""Apache Beam (DirectRunner) vs Oxbeam on the same Python pipelines.

    python sdk-python/bench/compare.py [--elements 1000000] [--words 2000000] [--skip-beam]

Workloads: a chain of 10 ``Map`` stages over N ints (then a global count),
and Beam's wordcount (ReadFromText, ParDo split, Map pair, CombinePerKey(sum),
format, WriteToText) over a generated text. Prints elements/s, words/s and
the Oxbeam/Beam ratios.
"""

import argparse
import importlib
import os
import random
import re
import shutil
import tempfile
import time


def chain(beam, n, options):
    with beam.Pipeline(options=options) as p:
        pc = p | beam.Create(range(n))
        for i in range(10):
            pc = pc | ("Map%d" % i) >> beam.Map(lambda x: x + 1)
        pc | beam.combiners.Count.Globally() | beam.Map(lambda c: c)


def wordcount(beam, inp, out, options):
    class Split(beam.DoFn):
        def process(self, element):
            return re.findall(r"[\w\']+", element, re.UNICODE)

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


def make_text(path, words):
    rnd = random.Random(42)
    vocab = ["w%d" % i for i in range(20000)] + ["the", "king", "lear's", "and"] * 500
    with open(path, "w") as f:
        left = words
        while left > 0:
            k = min(12, left)
            f.write(" ".join(rnd.choice(vocab) for _ in range(k)) + "\n")
            left -= k


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--elements", type=int, default=1_000_000)
    ap.add_argument("--words", type=int, default=2_000_000)
    ap.add_argument("--skip-beam", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="oxbeam-bench-")
    try:
        text = os.path.join(tmp, "input.txt")
        make_text(text, args.words)
        sdks = ["oxbeam"] + ([] if args.skip_beam else ["apache_beam"])
        results = {}
        for name in sdks:
            beam = importlib.import_module(name)
            if name == "apache_beam":
                import logging

                logging.getLogger("apache_beam").setLevel(logging.ERROR)
            opts_mod = importlib.import_module(name + ".options.pipeline_options")
            opts = opts_mod.PipelineOptions([])
            importlib.import_module(name + ".io")
            c = timed(lambda: chain(beam, args.elements, opts))
            w = timed(lambda: wordcount(beam, text, os.path.join(tmp, name, "out"), opts))
            results[name] = (args.elements / c, args.words / w)
            print("%-12s map chain: %10.0f elements/s (%.2fs)   wordcount: %10.0f words/s (%.2fs)"
                  % (name, args.elements / c, c, args.words / w, w), flush=True)
        if "apache_beam" in results:
            o, b = results["oxbeam"], results["apache_beam"]
            print("ratio oxbeam/beam: map chain %.1fx, wordcount %.1fx" % (o[0] / b[0], o[1] / b[1]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
