"""Side-by-side benchmark driver: Oxbeam vs apache-beam Python (same run,
same machine, same data). Invoked by `bench/run`; prints a Markdown table.

Rates are elements (or words) per second of pipeline time as reported by each
program; wall time and peak RSS are measured from outside for both.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
PY = sys.executable


def sh(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def measure(cmd):
    """Runs cmd; returns (parsed last JSON line of stdout, wall seconds, peak RSS MiB)."""
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = b"", b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read()
    err = proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(err.decode(errors="replace")[-4000:])
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}")
    lines = [l for l in out.decode().splitlines() if l.startswith("{")]
    return json.loads(lines[-1]), wall, usage.ru_maxrss / 1024.0


def coders():
    sh(["cargo", "bench", "-p", "oxbeam-bench", "--bench", "coders", "--",
        "--warm-up-time", "1", "--measurement-time", "3"])


def batch(quick):
    sh(["cargo", "build", "--release", "--locked", "-p", "oxbeam-bench", "--bins"])
    bin_dir = os.path.join(TARGET, "release")
    ox = os.path.join(bin_dir, "oxbeam-batch")
    cores = os.cpu_count() or 1
    scale = 10 if quick else 1
    tmp = tempfile.mkdtemp(prefix="oxbeam-bench-")
    rows = []

    def row(name, ox_cmd, beam_cmd, unit):
        results = {}
        for par in sorted({1, cores}):
            r, wall, rss = measure([ox_cmd[0], "--no-progress", "--parallelism", str(par)] + ox_cmd[1:])
            results[par] = (r["elements"] / r["seconds"], wall, rss)
        beam = None
        if beam_cmd:
            r, wall, rss = measure(beam_cmd)
            beam = (r["elements"] / r["seconds"], wall, rss)
        one = results[1]
        allc = results[cores]
        rows.append((name, unit, one, allc, beam))

    n_chain = 10_000_000 // scale
    n_beam_chain = 300_000 // scale
    for stages in (1, 10):
        row(f"B1 chain {stages} Map, 100 B", [ox, "chain", "--elements", str(n_chain), "--stages", str(stages)],
            [PY, "bench/python/beam_batch.py", "chain", "--elements", str(n_beam_chain), "--stages", str(stages)],
            "elem/s")
    for keys in (1000, 1_000_000):
        n = max(10_000_000 // scale, keys)
        row(f"B2 GroupByKey {keys} keys", [ox, "gbk", "--elements", str(n), "--keys", str(keys)],
            [PY, "bench/python/beam_batch.py", "gbk", "--elements", str(max(300_000 // scale, min(keys, 300_000))),
             "--keys", str(keys)], "elem/s")
    words = 50_000_000 // scale
    beam_words = 2_000_000 // scale
    for dist in ("uniform", "zipf"):
        big = os.path.join(tmp, f"corpus-{dist}.txt")
        small = os.path.join(tmp, f"corpus-{dist}-small.txt")
        sh([os.path.join(bin_dir, "gen-corpus"), "--words", str(words), "--dist", dist, "--out", big])
        sh([os.path.join(bin_dir, "gen-corpus"), "--words", str(beam_words), "--dist", dist, "--out", small])
        row(f"B3 wordcount {dist}", [ox, "wordcount", "--input", big, "--output", os.path.join(tmp, "ox-wc"),
                                     "--words", str(words)],
            [PY, "bench/python/beam_batch.py", "wordcount", "--input", small, "--elements", str(beam_words),
             "--output", os.path.join(tmp, "beam-wc")], "words/s")

    print()
    print(f"| workload | Oxbeam 1 core | Oxbeam {cores} cores | scaling | Beam Python | Oxbeam(1)/Beam | peak RSS Oxbeam / Beam |")
    print("|---|---|---|---|---|---|---|")
    for name, unit, one, allc, beam in rows:
        b = f"{beam[0]/1e6:.3f}M {unit}" if beam else "-"
        ratio = f"{one[0]/beam[0]:.0f}x" if beam else "-"
        mem = f"{max(one[2], allc[2]):.0f} / {beam[2]:.0f} MiB" if beam else f"{max(one[2], allc[2]):.0f} MiB"
        print(f"| {name} | {one[0]/1e6:.2f}M {unit} | {allc[0]/1e6:.2f}M {unit} | {allc[0]/one[0]:.2f}x | {b} | {ratio} | {mem} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("suite", nargs="?", default="all", choices=["coders", "batch", "all"])
    ap.add_argument("--quick", action="store_true", help="1/10 of the data, for a smoke run")
    args = ap.parse_args()
    if args.suite in ("coders", "all"):
        coders()
    if args.suite in ("batch", "all"):
        batch(args.quick)


if __name__ == "__main__":
    main()
