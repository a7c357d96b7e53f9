"""Bytewax peer of Oxbeam's streaming benchmarks (`oxbeam-streaming`), with
the same workloads, rates and measurements (see bench/README.md):

  bytewax_streaming.py latency --rate R --seconds S [--keys K] [--window-ms W]
  bytewax_streaming.py state --elements N --keys K

latency: a source emitting (key, seq) events at R/s (event i arrives, and is
stamped with its event time, at origin + i/R on the wall clock) -> Parse
(map) -> tumbling event-time windows of W ms aligned to the epoch, counted
per key (count_window, EventClock with no wait) -> Sink (inspect). Element
latency: arrival -> Parse; pane latency: window end -> Sink receiving the
window's count, per (key, window). The first second (warm-up) and windows
closed by the end of input are not counted.

state: N events over K keys, as fast as possible, through stateful_flat_map
keeping a per-key count (emitting nothing).

Runs one worker in this thread (bytewax.testing.run_main). Prints one JSON
line like oxbeam-streaming.
"""
import argparse
import json
import math
import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators.windowing import UTC_MAX, UTC_MIN, Clock, ClockLogic, TumblingWindower, count_window
from bytewax.testing import run_main

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MASK = (1 << 64) - 1


def now_us():
    return time.time_ns() // 1000


class Histogram:
    """1 us buckets below 10 ms, 100 us above (as oxbeam-streaming)."""

    def __init__(self):
        self.counts = {}

    def record(self, us):
        us = max(0, int(us))
        b = us if us < 10_000 else 10_000 + (us - 10_000) // 100 * 100
        self.counts[b] = self.counts.get(b, 0) + 1

    def summary(self):
        total = sum(self.counts.values())
        keys = sorted(self.counts)

        def at(q):
            rank = max(1, math.ceil(total * q))
            seen = 0
            for k in keys:
                seen += self.counts[k]
                if seen >= rank:
                    return k
            return 0

        return total, at(0.5), at(0.99), at(0.999), (keys[-1] if keys else 0)


# The watermark of the in-order stream: the largest event time the window
# operator had seen when the source last polled (single worker: timely runs
# source, map and window in turn, so every earlier batch is processed by then
# and every later item is at or after it).
WATERMARK = {"seen": UTC_MIN, "wm": UTC_MIN}


class InOrderClockLogic(ClockLogic):
    def before_batch(self):
        pass

    def on_item(self, value):
        ts = EPOCH + timedelta(microseconds=value[1])
        if ts > WATERMARK["seen"]:
            WATERMARK["seen"] = ts
        return ts, WATERMARK["wm"]

    def on_notify(self):
        return WATERMARK["wm"]

    def on_eof(self):
        return UTC_MAX

    def to_system_utc(self, timestamp):
        return timestamp

    def snapshot(self):
        return None


class InOrderClock(Clock):
    """Event time from the item; the watermark as Oxbeam's generator has it
    (everything before it has arrived), shared by all keys. Bytewax's own
    EventClock extrapolates each key's watermark with the system clock and
    drops items that lag behind it (~35% at 10k events/s with no wait)."""

    def build(self, resume_state):
        return InOrderClockLogic()


class RatePartition(StatefulSourcePartition):
    def __init__(self, rate, keys, seconds, state):
        self.rate = rate
        self.keys = keys
        self.origin = now_us()
        self.end = self.origin + int(seconds * 1e6)
        self.next = 0
        self.state = state
        state["origin"] = self.origin
        state["measure_from"] = self.origin + 1_000_000

    def next_batch(self):
        WATERMARK["wm"] = WATERMARK["seen"]
        now = now_us()
        if now >= self.end:
            self.state["stop_at"] = now
            self.state["processed_at_stop"] = self.state["parsed"]
            self.state["due_at_stop"] = self.next
            raise StopIteration()
        due = (now - self.origin) * self.rate // 1_000_000
        batch = []
        for i in range(self.next, due):
            arrival = self.origin + i * 1_000_000 // self.rate
            batch.append(((((i * 0x9E3779B97F4A7C15) & MASK) >> 20) % self.keys, i, arrival))
        self.next = max(self.next, due)
        return batch

    def next_awake(self):
        at = self.origin + self.next * 1_000_000 // self.rate
        return EPOCH + timedelta(microseconds=at)

    def snapshot(self):
        return None


class RateSource(FixedPartitionedSource):
    def __init__(self, rate, keys, seconds, state):
        self.args = (rate, keys, seconds, state)

    def list_parts(self):
        return ["0"]

    def build_part(self, step_id, for_part, resume_state):
        return RatePartition(*self.args)


def latency(rate, seconds, keys, window_ms):
    state = {"parsed": 0}
    elements = Histogram()
    panes = Histogram()
    length_us = window_ms * 1000

    flow = Dataflow("latency")
    events = op.input("events", flow, RateSource(rate, keys, seconds, state))

    def parse(e):
        key, _seq, arrival = e
        state["parsed"] += 1
        if arrival >= state["measure_from"]:
            elements.record(now_us() - arrival)
        return (str(key), arrival)

    parsed = op.map("parse", events, parse)
    clock = InOrderClock()
    windower = TumblingWindower(length=timedelta(milliseconds=window_ms), align_to=EPOCH)
    counts = count_window("count", parsed, clock, windower, key=lambda e: e[0])
    state["counted"] = 0

    def sink(_step, kv):
        now = now_us()
        _key, (window_id, count) = kv
        state["counted"] += count
        start = window_id * length_us
        end = start + length_us
        if start >= state["measure_from"] and end <= state.get("stop_at", 1 << 62):
            panes.record(now - end)

    op.inspect("sink", counts.down, sink)
    state["late"] = 0

    def late(_step, kv):
        state["late"] += 1

    op.inspect("late", counts.late, late)
    started = time.perf_counter()
    run_main(flow)
    elapsed = min(time.perf_counter() - started, seconds)
    assert state["counted"] == state["parsed"], (state["counted"], state["parsed"], state["late"],
                                                 elements.summary())
    n, p50, p99, p999, mx = elements.summary()
    pn, pp50, pp99, pp999, pmx = panes.summary()
    due = state.get("due_at_stop", state["parsed"])
    return {"workload": "latency", "rate": rate, "seconds": round(elapsed, 3), "due": due,
            "processed": state.get("processed_at_stop", state["parsed"]), "keeps_up": p99 < 100_000,
            "elements": n, "element_p50_us": p50, "element_p99_us": p99, "element_p999_us": p999,
            "element_max_us": mx, "panes": pn, "pane_p50_us": pp50, "pane_p99_us": pp99,
            "pane_p999_us": pp999, "pane_max_us": pmx}


class CountPartition(StatefulSourcePartition):
    def __init__(self, n, keys):
        self.n = n
        self.keys = keys
        self.next = 0

    def next_batch(self):
        if self.next >= self.n:
            raise StopIteration()
        end = min(self.n, self.next + 1000)
        keys = self.keys
        batch = [(str((((i * 0x9E3779B97F4A7C15) & MASK) >> 20) % keys), i) for i in range(self.next, end)]
        self.next = end
        return batch

    def snapshot(self):
        return None


class CountSource(FixedPartitionedSource):
    def __init__(self, n, keys):
        self.args = (n, keys)

    def list_parts(self):
        return ["0"]

    def build_part(self, step_id, for_part, resume_state):
        return CountPartition(*self.args)


def state_bench(n, keys):
    flow = Dataflow("state")
    events = op.input("events", flow, CountSource(n, keys))

    def update(count, _value):
        return (count or 0) + 1, ()

    counted = op.stateful_flat_map("count", events, update)
    op.inspect("sink", counted, lambda _step, _kv: None)
    started = time.perf_counter()
    run_main(flow)
    return {"workload": "state", "elements": n, "keys": keys, "seconds": time.perf_counter() - started}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="workload", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--rate", type=int, required=True)
    lat.add_argument("--seconds", type=float, required=True)
    lat.add_argument("--keys", type=int, default=1000)
    lat.add_argument("--window-ms", type=int, default=1000)
    st = sub.add_parser("state")
    st.add_argument("--elements", type=int, required=True)
    st.add_argument("--keys", type=int, required=True)
    args = ap.parse_args()
    if args.workload == "latency":
        out = latency(args.rate, args.seconds, args.keys, args.window_ms)
    else:
        out = state_bench(args.elements, args.keys)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
