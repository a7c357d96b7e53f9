"""Side-by-side benchmark driver: Oxbeam vs apache-beam Python (same run,
same machine, same data). Invoked by `bench/run`; prints a Markdown table.

Rates are elements (or words) per second of pipeline time as reported by each
program; wall time and peak RSS are measured from outside for both.

The `beam` suite runs Beam's own `apache_beam.examples.wordcount` unchanged:
on Beam's DirectRunner (FnApiRunner, in-process and multi-process) and on
`oxbeam job-server` through Beam's PortableRunner, on one generated corpus,
checks that every run wrote the same counts, and reports wall times and
ratios; then the submission-to-result latency of a tiny pipeline.

The `python` suite runs Oxbeam's Python SDK (in process, and with its
Python stages in harness processes) and its peers, apache-beam's
DirectRunner and Bytewax, on a 10-Map chain and wordcount
(`bench/python/python_sdks.py`), checking they agree.

The `streaming` suite runs `oxbeam-streaming` and its Bytewax peer
(`bench/python/bytewax_streaming.py`) on the same workloads: end-to-end
latency at a fixed rate, the highest rate each keeps up with on one core,
and per-key ValueState updates over 1M keys (see bench/README.md).

The `wasm` suite compares Wasm UDFs with native ones: the stage alone and
in a whole pipeline.
"""
import argparse
import glob
import json
import os
import re
import shlex
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


def timed(cmd, env=None):
    """Runs cmd (its output kept for errors only); returns wall seconds."""
    print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout.decode(errors="replace")[-4000:])
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}")
    return wall


def start_job_server(binary):
    """Starts `oxbeam job-server` on a free port; returns (process, endpoint)."""
    proc = subprocess.Popen([binary, "job-server", "--job_port", "0", "--log_level", "warn"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on (\S+):(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"oxbeam job-server did not print its endpoint: {line!r}")
    # The job server starts Beam Python harnesses ahead (one per core): let
    # them finish importing before anything is timed, so that work does not
    # slow the runs measured next to it.
    deadline = time.time() + 15
    while warm_harnesses() < (os.cpu_count() or 1) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    return proc, f"localhost:{m.group(2)}"


def warm_harnesses():
    """Harness processes the job server keeps started ahead (waiting for a job)."""
    found = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"import apache_beam.runners.worker.sdk_worker_main as harness" in f.read():
                    found += 1
        except OSError:
            pass
    return found


def prism_binary():
    """A Prism binary Beam has already downloaded, if any (never downloads)."""
    found = glob.glob(os.path.expanduser("~/.apache_beam/cache/prism/bin/*prism*"))
    return found[0] if found else None


def word_counts(prefix):
    """The sorted lines of every output shard of a wordcount run."""
    lines = []
    for f in sorted(glob.glob(prefix + "*")):
        with open(f) as fh:
            lines.extend(fh.read().splitlines())
    return sorted(lines)


def beam(quick, words, workers, build):
    """Beam Python wordcount: DirectRunner vs Oxbeam's job server."""
    if build:
        sh(["cargo", "build", "--release", "--locked", "-p", "oxbeam-cli", "-p", "oxbeam-bench",
            "--bin", "oxbeam", "--bin", "gen-corpus"])
    bin_dir = os.path.join(TARGET, "release")
    words = words // 10 if quick else words
    tmp = tempfile.mkdtemp(prefix="oxbeam-bench-beam-")
    corpus = os.path.join(tmp, "corpus.txt")
    sh([os.path.join(bin_dir, "gen-corpus"), "--words", str(words), "--dist", "zipf", "--out", corpus])
    mib = os.path.getsize(corpus) / (1 << 20)
    server, endpoint = start_job_server(os.environ.get("OXBEAM_BIN") or os.path.join(bin_dir, "oxbeam"))
    wordcount = [PY, "-m", "apache_beam.examples.wordcount", "--input", corpus]
    harness = json.dumps({"command": f"{PY} -m apache_beam.runners.worker.sdk_worker_main"})
    portable = ["--runner=PortableRunner", f"--job_endpoint={endpoint}"]
    runs = [
        ("Beam DirectRunner (FnApiRunner)", 1, []),
        ("Oxbeam job server, LOOPBACK", 1, portable + ["--environment_type=LOOPBACK"]),
        ("Oxbeam job server, PROCESS", 1,
         portable + ["--environment_type=PROCESS", f"--environment_config={harness}",
                     "--sdk_worker_parallelism=1"]),
        ("Beam DirectRunner multi_processing", workers,
         [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]),
        ("Oxbeam job server, PROCESS", workers,
         portable + ["--environment_type=PROCESS", f"--environment_config={harness}",
                     f"--sdk_worker_parallelism={workers}"]),
    ]
    prism = prism_binary()
    if prism:
        runs.append(("Beam Prism", 1, ["--runner=PrismRunner", f"--prism_location={prism}"]))
    results = []
    try:
        for i, (name, n, flags) in enumerate(runs):
            out = os.path.join(tmp, f"out{i}", "counts")
            wall = timed(wordcount + ["--output", out] + flags)
            results.append((name, n, wall, word_counts(out)))
        latency_cmd = [PY, "bench/python/beam_latency.py", f"--job_endpoint={endpoint}", "--runs", "10"]
        print("+ " + " ".join(latency_cmd), file=sys.stderr, flush=True)
        latency = json.loads(subprocess.run(latency_cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL).stdout.decode().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)
    expected = results[0][3]
    for name, _, _, counts in results:
        if counts != expected:
            raise SystemExit(f"{name} wrote different counts than DirectRunner "
                             f"({len(counts)} vs {len(expected)} lines)")
    if not prism:
        print("(Prism: no binary in ~/.apache_beam/cache/prism; not run)", file=sys.stderr)
    direct = results[0][2]
    print()
    print(f"Beam Python wordcount (apache_beam.examples.wordcount), {words} words ({mib:.1f} MiB, Zipf), "
          f"{os.cpu_count()} cores; {len(expected)} distinct words, identical output on every runner")
    print()
    print("| runner | harness workers | wall time | vs DirectRunner |")
    print("|---|---|---|---|")
    for name, n, wall, _ in results:
        print(f"| {name} | {n} | {wall:.2f} s | {direct / wall:.2f}x |")
    print()
    print("Tiny pipeline (Create 3 -> Map -> assert_that, LOOPBACK), p.run() to DONE:")
    for key, label in [("default", "Beam's default client options"),
                       ("no_pip_freeze", "--experiments=disable_logging_submission_environment")]:
        r = latency[key]
        print(f"- {label}: best {r['best']*1000:.0f} ms, median {r['median']*1000:.0f} ms ({r['runs']} runs)")


def python_sdks(quick, words, elements, workers, build, repeat=1):
    """Oxbeam's Python SDK (in process; multi_processing) vs apache-beam
    (DirectRunner) and Bytewax on a 10-Map chain and wordcount; each SDK
    `repeat` times, in turns, its fastest run reported."""
    if build:
        sh([PY, "-m", "pip", "install", "--quiet", "./sdk-python"])
        sh(["cargo", "build", "--release", "--locked", "-p", "oxbeam-bench", "--bin", "gen-corpus"])
    words = words // 10 if quick else words
    elements = elements // 10 if quick else elements
    tmp = tempfile.mkdtemp(prefix="oxbeam-bench-python-")
    corpus = os.path.join(tmp, "corpus.txt")
    sh([os.path.join(TARGET, "release", "gen-corpus"), "--words", str(words), "--dist", "zipf",
        "--out", corpus])
    bytewax_error = ensure_bytewax()
    sdks = [("oxbeam", "Oxbeam Python, in process"),
            ("oxbeam-mp", f"Oxbeam Python, multi_processing ({workers} workers)"),
            ("beam", "apache-beam DirectRunner (FnApiRunner)"),
            ("bytewax", "Bytewax 0.21.1, 1 worker")]
    script = [PY, "bench/python/python_sdks.py"]
    tables = {}
    for workload, n, unit in [("chain", elements, "elements/s"), ("wordcount", words, "words/s")]:
        best = {}
        for rep in range(max(1, repeat)):
            for sdk, label in sdks:
                if sdk == "bytewax" and bytewax_error:
                    if rep == 0:
                        print(f"({bytewax_error}; Bytewax not run)", file=sys.stderr)
                    continue
                out = os.path.join(tmp, sdk, f"{workload}-{rep}")
                os.makedirs(os.path.dirname(out), exist_ok=True)
                cmd = script + [sdk, workload, "--output", out, f"--workers={workers}"]
                cmd += [f"--elements={n}"] if workload == "chain" else [f"--input={corpus}", f"--words={n}"]
                r, wall, rss = measure(cmd)
                if label not in best or r["seconds"] < best[label][1]["seconds"]:
                    best[label] = (label, r, wall, rss)
        rows = [best[label] for _, label in sdks if label in best]
        checks = {str(r["check"]) for _, r, _, _ in rows}
        if len(checks) != 1:
            raise SystemExit(f"{workload}: SDKs disagree: {checks}")
        tables[workload] = (n, unit, rows)
    print()
    runs = f"best of {repeat} runs each, in turns" if repeat > 1 else "one run each"
    print(f"Python SDKs, {os.cpu_count()} cores, load {load_average():.1f}; same data, identical "
          f"results; {runs}")
    for workload, (n, unit, rows) in tables.items():
        title = {"chain": f"10 chained Map(x + 1) over {n} ints, then Count.Globally",
                 "wordcount": f"wordcount over {n} words (Zipf), Beam's wordcount pipeline"}[workload]
        best_ox = max(r["rate"] for label, r, _, _ in rows if label.startswith("Oxbeam"))
        print()
        print(f"{title}")
        print()
        print(f"| SDK | {unit} | pipeline time | wall (with interpreter start) | peak RSS | best Oxbeam / this |")
        print("|---|---|---|---|---|---|")
        for label, r, wall, rss in rows:
            print(f"| {label} | {r['rate'] / 1e6:.2f}M | {r['seconds']:.2f} s | {wall:.2f} s | "
                  f"{rss:.0f} MiB | {best_ox / r['rate']:.1f}x |")


def load_average():
    return os.getloadavg()[0]


def ensure_bytewax():
    """Installs Bytewax (the streaming peer) into this venv if it is missing;
    returns an error message when it cannot be installed."""
    probe = subprocess.run([PY, "-c", "import bytewax"], capture_output=True)
    if probe.returncode == 0:
        return None
    print("+ pip install bytewax==0.21.1", file=sys.stderr, flush=True)
    pip = subprocess.run([PY, "-m", "pip", "install", "--quiet", "bytewax==0.21.1"],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        return "bytewax does not install here: " + pip.stderr.strip().splitlines()[-1:][0]
    return None


def run_json(cmd):
    """Runs cmd; returns its last JSON line."""
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace")[-4000:])
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}")
    lines = [l for l in proc.stdout.decode().splitlines() if l.startswith("{")]
    return json.loads(lines[-1])


def max_rate(run, start, seconds, limit, steps):
    """The highest rate (events/s) at which `run(rate, seconds)` keeps up:
    doubles from `start` until it falls behind, then bisects `steps` times."""
    good, bad = 0, None
    rate = start
    while rate <= limit:
        if run(rate, seconds)["keeps_up"]:
            good = rate
            rate *= 2
        else:
            bad = rate
            break
    if bad is None:
        return good, True
    for _ in range(steps):
        if bad - good <= max(good, start) // 16:
            break
        mid = (good + bad) // 2
        if run(mid, seconds)["keeps_up"]:
            good = mid
        else:
            bad = mid
    return good, False


def streaming(quick, build):
    """S1 latency and throughput, S2 state: Oxbeam vs Bytewax."""
    if build:
        sh(["cargo", "build", "--release", "--locked", "-p", "oxbeam-bench", "--bin", "oxbeam-streaming"])
    ox = os.path.join(TARGET, "release", "oxbeam-streaming")
    peer_error = ensure_bytewax()
    bw = [PY, "bench/python/bytewax_streaming.py"]
    one_core = ["taskset", "-c", "0"]
    seconds = 5 if quick else 20
    trial = 3 if quick else 5
    rate = 100_000
    loads = [load_average()]

    def ox_latency(r, secs, pin=False):
        return run_json((one_core if pin else []) + [ox, "--no-progress", "--parallelism", "1", "latency",
                                                     "--rate", str(r), "--seconds", str(secs)])

    def bw_latency(r, secs, pin=False):
        return run_json((one_core if pin else []) + bw + ["latency", "--rate", str(r), "--seconds", str(secs)])

    ox_lat = ox_latency(rate, seconds)
    bw_lat = None if peer_error else bw_latency(rate, seconds)
    loads.append(load_average())
    ox_max, ox_capped = max_rate(lambda r, s: ox_latency(r, s, pin=True), rate, trial, 25_600_000, 3 if quick else 4)
    bw_max, bw_capped = (0, False) if peer_error else max_rate(lambda r, s: bw_latency(r, s, pin=True), 10_000,
                                                               trial, 6_400_000, 3 if quick else 4)
    loads.append(load_average())
    keys = 1_000_000
    n_ox = 2_000_000 if quick else 10_000_000
    n_bw = 300_000 if quick else 1_000_000
    st = run_json(one_core + [ox, "--no-progress", "--parallelism", "1", "state", "--elements", str(n_ox),
                              "--keys", str(keys)])
    ox_state = st["elements"] / st["seconds"]
    bw_state = None
    if not peer_error:
        st = run_json(one_core + bw + ["state", "--elements", str(n_bw), "--keys", str(keys)])
        bw_state = st["elements"] / st["seconds"]
    loads.append(load_average())

    def ms(us):
        return f"{us / 1000:.2f} ms"

    def lat_row(name, key, target=None):
        o = ox_lat[key]
        b = bw_lat[key] if bw_lat else None
        t = f" (target {target})" if target else ""
        print(f"| {name}{t} | {ms(o)} | {ms(b) if b is not None else '-'} | "
              f"{f'{b / max(o, 1):.1f}x' if b is not None else '-'} |")

    print()
    print(f"Streaming on {os.cpu_count()} cores shared with other work; 1-minute load average "
          f"{', '.join(f'{l:.2f}' for l in loads)} (start, after latency, after throughput, end)."
          + (f" Peer missing: {peer_error}" if peer_error else ""))
    print()
    print(f"S1 latency: generator {rate} events/s over 1000 keys -> Parse -> 1 s fixed windows, count per key "
          f"-> Sink, {seconds} s (first second not counted); Oxbeam --parallelism 1, Bytewax 1 worker")
    print()
    print("| latency at 100k events/s | Oxbeam | Bytewax | Bytewax/Oxbeam |")
    print("|---|---|---|---|")
    lat_row("element p50: arrival -> Parse output", "element_p50_us", "1 ms")
    lat_row("element p99", "element_p99_us", "10 ms")
    lat_row("element max", "element_max_us")
    lat_row("pane p50: window end -> Sink", "pane_p50_us")
    lat_row("pane p99", "pane_p99_us")
    for name, r in [("Oxbeam", ox_lat), ("Bytewax", bw_lat)]:
        if r:
            print(f"- {name}: {r['processed']} of {r['due']} events due processed when stopped; "
                  f"{r['panes']} on-time panes measured; keeps up: {r['keeps_up']}")
    print()
    print("| one core (taskset -c 0) | Oxbeam | Bytewax | Oxbeam/Bytewax |")
    print("|---|---|---|---|")
    cap = lambda capped: " (limit of the search)" if capped else ""
    print(f"| S1 max sustainable rate (p99 element latency < 100 ms, {trial} s trials) | "
          f"{ox_max / 1e3:.0f}k events/s{cap(ox_capped)} | "
          f"{f'{bw_max / 1e3:.0f}k events/s{cap(bw_capped)}' if not peer_error else '-'} | "
          f"{f'{ox_max / bw_max:.1f}x' if bw_max else '-'} |")
    print(f"| S2 ValueState updates, 1M keys ({n_ox} vs {n_bw} events) | {ox_state / 1e6:.2f}M/s | "
          f"{f'{bw_state / 1e6:.3f}M/s' if bw_state else '-'} | "
          f"{f'{ox_state / bw_state:.1f}x' if bw_state else '-'} |")


def fnapi(quick, build):
    """The Fn API across processes: raw data plane and control round trip
    (`oxbeam-fnapi`, harness in a process and in a thread), and B1 chain with
    the native stages in SDK harness processes vs in process."""
    if build:
        sh(["cargo", "build", "--release", "--locked", "-p", "oxbeam-bench", "--bins"])
    bin_dir = os.path.join(TARGET, "release")
    scale = 10 if quick else 1
    raw = {}
    for mode, flags in (("process", []), ("thread", ["--in-process"]), ("memory", ["--in-memory"])):
        cmd = [os.path.join(bin_dir, "oxbeam-fnapi"), "--bundles", str(max(40 // scale, 10)),
               "--round-trips", str(2000 // scale)] + flags
        raw[mode], _, _ = measure(cmd)
    floor, _, _ = measure([os.path.join(bin_dir, "oxbeam-rtt-floor"), "--round-trips", str(20000 // scale)])
    n = 10_000_000 // scale
    chain = {}
    for env in ("EMBEDDED", "PROCESS"):
        r, wall, rss = measure([os.path.join(bin_dir, "oxbeam-batch"), "--no-progress", "--parallelism", "1",
                                "--environment-type", env, "chain", "--elements", str(n), "--stages", "1"])
        chain[env] = (r["elements"] / r["seconds"], wall, rss)
    print()
    print("| Fn API, 100-byte elements | harness process (gRPC) | harness thread (gRPC) | harness thread (in-memory transport) |")
    print("|---|---|---|---|")
    modes = [raw["process"], raw["thread"], raw["memory"]]
    print("| data plane, each way | " + " | ".join(
        f"{m['mb_per_sec_each_way']:.0f} MB/s ({m['elements_per_sec']/1e6:.2f}M elem/s)" for m in modes) + " |")
    print("| control round trip (empty bundle) | " + " | ".join(f"{m['round_trip_us']:.0f} µs" for m in modes) + " |")
    print("| harness start to first processor | " + " | ".join(f"{m['connect_ms']:.0f} ms" for m in modes) + " |")
    print()
    print("This machine's round-trip floor (`oxbeam-rtt-floor`, no Oxbeam code on the path): "
          f"two threads over a channel {floor['threads_us']:.0f} µs, blocking loopback TCP between "
          f"processes {floor['tcp_us']:.0f} µs, one bare tonic bidirectional stream between processes "
          f"{floor['grpc_us']:.0f} µs.")
    print()
    # Generate, Map and the count's precombine fuse into one stage that runs
    # in the harness: only the precombined counts cross the Fn API.
    print("| B1 chain 1 Map, 100 B, 1 thread (stages in the harness) | in process | SDK harness process | process/in-process |")
    print("|---|---|---|---|")
    e, pr = chain["EMBEDDED"], chain["PROCESS"]
    print(f"| rate | {e[0]/1e6:.2f}M elem/s | {pr[0]/1e6:.2f}M elem/s | {pr[0]/e[0]:.2f}x |")


def rebalance(quick, build):
    """Dynamic work rebalancing: one straggling bundle on 2 workers, with and
    without runner-initiated splits. B4 `oxbeam-batch skew` (native stage,
    unfused so the slow Map reads one bundle) and a Beam Python splittable
    DoFn whose one restriction is not split up front (`oxbeam run`, two of
    Beam's own harness processes). Ideal: half the serial time."""
    if build:
        sh(["cargo", "build", "--release", "--locked", "-p", "oxbeam-bench", "-p", "oxbeam-cli", "--bins"])
    bin_dir = os.path.join(TARGET, "release")
    oxbeam = os.environ.get("OXBEAM_BIN", os.path.join(bin_dir, "oxbeam"))
    n = 2000 if quick else 8000
    micros = 500
    rows = []
    native = {}
    for split in (False, True):
        extra = [] if split else ["--no-dynamic-splitting"]
        r, wall, _ = measure([os.path.join(bin_dir, "oxbeam-batch"), "--no-progress", "--parallelism", "2",
                              "--no-fusion"] + extra + ["skew", "--elements", str(n), "--micros", str(micros)])
        native[split] = (r["seconds"], r["splits"])
    rows.append((f"native Map, {n} x {micros} µs, one bundle", native))
    tmp = tempfile.mkdtemp(prefix="oxbeam-bench-")
    pb = os.path.join(tmp, "sdf.pb")
    sh([PY, "bench/python/beam_sdf_straggler.py", "--positions", str(n), "--micros", str(micros), "--out", pb])
    sdf = {}
    for split in (False, True):
        cmd = [oxbeam, "run", pb, "--parallelism", "2", "--sdk-worker-parallelism", "2"] + (
            [] if split else ["--no-dynamic-splitting"])
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit("benchmark command failed: " + " ".join(cmd))
        # The step summary: "   1.234s  stage stage-2 (3 tasks, 2 split)";
        # the SDF's stage is the slowest.
        steps = [(float(m.group(1)) * (1e-3 if m.group(2) == "ms" else 1), int(m.group(3) or 0))
                 for m in re.finditer(r"^\s*([\d.]+)(ms|s)\s+stage \S+ \(\d+ tasks(?:, (\d+) split)?\)",
                                      proc.stderr, re.M)]
        seconds, splits = max(steps)
        sdf[split] = (seconds, splits)
    rows.append((f"Beam Python SDF, {n} positions x {micros} µs, one restriction", sdf))
    print()
    print("| one straggling bundle, 2 workers | serial work | no splitting | dynamic splitting | speed-up | splits |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        (off, _), (on, splits) = r[False], r[True]
        print(f"| {name} | {n * micros / 1e6:.2f} s | {off:.2f} s | {on:.2f} s | {off / on:.2f}x | {splits} |")


def wasm(quick, build):
    """Wasm UDFs vs native: the stage alone (`oxbeam-wasm-bench`: Map and
    tokenizer over 10M elements against a hand-written native loop, call
    overhead, start-up), then a whole pipeline, text read -> tokenizer ->
    global count, with the tokenizer as a Rust SDK FlatMap or as the guest's
    `tokenize` (`oxbeam-batch tokenize`; the counts must agree)."""
    if build:
        sh(["cargo", "build", "--release", "--locked", "-p", "oxbeam-wasm", "-p", "oxbeam-bench", "--bins"])
    bin_dir = os.path.join(TARGET, "release")
    n = 1_000_000 if quick else 10_000_000
    print("+ oxbeam-wasm-bench", n, file=sys.stderr, flush=True)
    stage = subprocess.run([os.path.join(bin_dir, "oxbeam-wasm-bench"), str(n)], cwd=ROOT,
                           capture_output=True, text=True)
    if stage.returncode != 0:
        sys.stderr.write(stage.stderr[-4000:])
        raise SystemExit("benchmark command failed: oxbeam-wasm-bench")
    print()
    print("Wasm stage vs native loop (`oxbeam-wasm-bench`, best of 3 alternating runs):")
    print()
    print("```")
    print(stage.stdout.strip())
    print("```")
    with tempfile.TemporaryDirectory(prefix="oxbeam-bench-wasm-") as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        sh([os.path.join(bin_dir, "gen-corpus"), "--words", str(n), "--dist", "zipf", "--out", corpus])
        best, counts = {}, set()
        for _ in range(3):
            for udf in ("native", "wasm"):
                r, _, rss = measure([os.path.join(bin_dir, "oxbeam-batch"), "--no-progress", "tokenize",
                                     "--input", corpus, "--udf", udf])
                counts.add(r["elements"])
                if udf not in best or r["seconds"] < best[udf][0]:
                    best[udf] = (r["seconds"], rss)
        if len(counts) != 1:
            raise SystemExit(f"native and Wasm tokenizers counted different numbers of words: {sorted(counts)}")
        n = counts.pop()
    print()
    print(f"| pipeline: read, tokenize, count ({n / 1e6:.1f}M tokens, best of 3) | native FlatMap | Wasm FlatMap | Wasm/native |")
    print("|---|---|---|---|")
    (nt, nr), (wt, wr) = best["native"], best["wasm"]
    print(f"| time | {nt:.3f} s ({n / nt / 1e6:.1f}M words/s) | {wt:.3f} s ({n / wt / 1e6:.1f}M words/s) | {wt / nt:.2f}x |")
    print(f"| peak RSS | {nr:.0f} MiB | {wr:.0f} MiB | |")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("suite", nargs="?", default="all", choices=["coders", "batch", "beam", "python", "streaming", "fnapi", "rebalance", "wasm", "all"])
    ap.add_argument("--quick", action="store_true", help="1/10 of the data, for a smoke run")
    ap.add_argument("--words", type=int, default=5_000_000,
                    help="beam: words of the wordcount corpus (~8 bytes each; default ~40 MB)")
    ap.add_argument("--elements", type=int, default=1_000_000,
                    help="python: ints through the Map chain")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="beam, python: harness workers for the multi-worker runs (default: cores)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="python: runs of each SDK (in turns); the fastest is reported")
    ap.add_argument("--no-build", dest="build", action="store_false",
                    help="beam, streaming, fnapi, rebalance, wasm: use the release binaries already built ($OXBEAM_BIN for oxbeam)")
    args = ap.parse_args()
    if args.suite in ("coders", "all"):
        coders()
    if args.suite in ("batch", "all"):
        batch(args.quick)
    if args.suite in ("beam", "all"):
        beam(args.quick, args.words, args.workers, args.build)
    if args.suite in ("python", "all"):
        python_sdks(args.quick, args.words, args.elements, args.workers, args.build, args.repeat)
    if args.suite in ("streaming", "all"):
        streaming(args.quick, args.build)
    if args.suite in ("fnapi", "all"):
        fnapi(args.quick, args.build)
    if args.suite in ("rebalance", "all"):
        rebalance(args.quick, args.build)
    if args.suite in ("wasm", "all"):
        wasm(args.quick, args.build)


if __name__ == "__main__":
    main()
