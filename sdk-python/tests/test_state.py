"""State and timers in DoFns: same output on Beam's DirectRunner and Oxbeam."""

import importlib

import pytest


def _mods(B):
    n = B.name
    return (
        importlib.import_module(n + ".transforms.userstate"),
        importlib.import_module(n + ".transforms.timeutil").TimeDomain,
        importlib.import_module(n + ".coders"),
        importlib.import_module(n + ".transforms.window"),
    )


def test_stateful_dedup_with_set_state(B):
    beam = B.beam
    us, _, coders, _ = _mods(B)

    class Dedup(beam.DoFn):
        SEEN = us.SetStateSpec("seen", coders.StrUtf8Coder())

        def process(self, kv, seen=beam.DoFn.StateParam(SEEN)):
            k, v = kv
            if v not in seen.read():
                seen.add(v)
                yield kv

    with B.pipeline() as p:
        out = (p | beam.Create([("a", "x"), ("a", "y"), ("a", "x"), ("b", "x"), ("b", "x"), ("a", "y")])
               | beam.ParDo(Dedup()))
        B.assert_that(out, B.equal_to([("a", "x"), ("a", "y"), ("b", "x")]))


def test_running_count_with_read_modify_write_state(B):
    beam = B.beam
    us, _, coders, _ = _mods(B)

    class RunningCount(beam.DoFn):
        COUNT = us.ReadModifyWriteStateSpec("count", coders.VarIntCoder())

        def process(self, kv, count=beam.DoFn.StateParam(COUNT)):
            n = (count.read() or 0) + 1
            count.write(n)
            yield kv[0], n

    with B.pipeline() as p:
        out = (p | beam.Create([("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)])
               | beam.ParDo(RunningCount()))
        B.assert_that(out, B.equal_to([("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2)]))


def test_bag_state_flushed_by_event_time_timer(B):
    beam = B.beam
    us, TimeDomain, coders, window = _mods(B)

    class BufferUntilWindowEnd(beam.DoFn):
        BUFFER = us.BagStateSpec("buffer", coders.VarIntCoder())
        FLUSH = us.TimerSpec("flush", TimeDomain.WATERMARK)

        def process(self, kv, buffer=beam.DoFn.StateParam(BUFFER), flush=beam.DoFn.TimerParam(FLUSH),
                    w=beam.DoFn.WindowParam):
            buffer.add(kv[1])
            flush.set(w.max_timestamp())

        @us.on_timer(FLUSH)
        def on_flush(self, key=beam.DoFn.KeyParam, buffer=beam.DoFn.StateParam(BUFFER),
                     ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam):
            yield key, sorted(buffer.read()), float(ts), float(w.start)
            buffer.clear()

    with B.pipeline() as p:
        out = (p | beam.Create([("a", 1), ("a", 3), ("b", 2), ("a", 12)])
               | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
               | beam.WindowInto(window.FixedWindows(10))
               | beam.ParDo(BufferUntilWindowEnd()))
        B.assert_that(out, B.equal_to([
            ("a", [1, 3], 9.999, 0.0),
            ("b", [2], 9.999, 0.0),
            ("a", [12], 19.999, 10.0),
        ]))


def test_timer_output_timestamp_is_the_fire_time(B):
    beam = B.beam
    us, TimeDomain, coders, window = _mods(B)

    class Later(beam.DoFn):
        T = us.TimerSpec("t", TimeDomain.WATERMARK)

        def process(self, kv, t=beam.DoFn.TimerParam(T)):
            t.set(kv[1] + 100)

        @us.on_timer(T)
        def fired(self, key=beam.DoFn.KeyParam):
            yield key

    with B.pipeline() as p:
        out = (p | beam.Create([("a", 5)])
               | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
               | beam.ParDo(Later())
               | beam.Map(lambda k, ts=beam.DoFn.TimestampParam: (k, float(ts))))
        B.assert_that(out, B.equal_to([("a", 105.0)]))


def test_cleared_timer_does_not_fire(B):
    beam = B.beam
    us, TimeDomain, _, _ = _mods(B)

    class ClearOnCancel(beam.DoFn):
        T = us.TimerSpec("t", TimeDomain.WATERMARK)

        def process(self, kv, t=beam.DoFn.TimerParam(T)):
            if kv[1] == "set":
                t.set(100)
            else:
                t.clear()

        @us.on_timer(T)
        def fired(self, key=beam.DoFn.KeyParam):
            yield "fired", key

    with B.pipeline() as p:
        out = (p | beam.Create([("a", "set"), ("b", "set"), ("b", "cancel"), ("c", "cancel")])
               | beam.ParDo(ClearOnCancel()))
        B.assert_that(out, B.equal_to([("fired", "a")]))


def test_timer_reset_fires_once_at_the_latest_time(B):
    beam = B.beam
    us, TimeDomain, _, window = _mods(B)

    class LastSeen(beam.DoFn):
        T = us.TimerSpec("t", TimeDomain.WATERMARK)

        def process(self, kv, t=beam.DoFn.TimerParam(T), ts=beam.DoFn.TimestampParam):
            t.set(ts + 10)

        @us.on_timer(T)
        def fired(self, key=beam.DoFn.KeyParam, ts=beam.DoFn.TimestampParam):
            yield key, float(ts)

    with B.pipeline() as p:
        out = (p | beam.Create([("a", 1), ("a", 7), ("b", 3)])
               | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
               | beam.ParDo(LastSeen()))
        # One timer per key: the last set wins (Create's order within a key).
        B.assert_that(out, B.equal_to([("a", 17.0), ("b", 13.0)]))


def test_dynamic_timer_tags(B):
    beam = B.beam
    us, TimeDomain, _, _ = _mods(B)

    class PerTag(beam.DoFn):
        T = us.TimerSpec("t", TimeDomain.WATERMARK)

        def process(self, kv, t=beam.DoFn.TimerParam(T)):
            t.set(kv[1], dynamic_timer_tag="tag%d" % kv[1])

        @us.on_timer(T)
        def fired(self, key=beam.DoFn.KeyParam, tag=beam.DoFn.DynamicTimerTagParam,
                  ts=beam.DoFn.TimestampParam):
            yield key, tag, float(ts)

    with B.pipeline() as p:
        out = p | beam.Create([("a", 1), ("a", 2), ("a", 1), ("b", 2)]) | beam.ParDo(PerTag())
        B.assert_that(out, B.equal_to([("a", "tag1", 1.0), ("a", "tag2", 2.0), ("b", "tag2", 2.0)]))


def test_combining_state_and_timer(B):
    beam = B.beam
    us, TimeDomain, coders, _ = _mods(B)

    class SumPerKey(beam.DoFn):
        TOTAL = us.CombiningValueStateSpec("total", combine_fn=sum)
        COUNT = us.CombiningValueStateSpec("count", coders.VarIntCoder(), beam.combiners.CountCombineFn())
        EMIT = us.TimerSpec("emit", TimeDomain.WATERMARK)

        def process(self, kv, total=beam.DoFn.StateParam(TOTAL), count=beam.DoFn.StateParam(COUNT),
                    emit=beam.DoFn.TimerParam(EMIT)):
            total.add(kv[1])
            count.add(kv[1])
            emit.set(50)

        @us.on_timer(EMIT)
        def on_emit(self, key=beam.DoFn.KeyParam, total=beam.DoFn.StateParam(TOTAL),
                    count=beam.DoFn.StateParam(COUNT)):
            yield key, total.read(), count.read()

    with B.pipeline() as p:
        out = p | beam.Create([("a", 1), ("a", 2), ("b", 5), ("a", 4)]) | beam.ParDo(SumPerKey())
        B.assert_that(out, B.equal_to([("a", 7, 3), ("b", 5, 1)]))


def test_state_is_per_window(B):
    beam = B.beam
    us, _, coders, window = _mods(B)

    class Count(beam.DoFn):
        N = us.ReadModifyWriteStateSpec("n", coders.VarIntCoder())

        def process(self, kv, n=beam.DoFn.StateParam(N), w=beam.DoFn.WindowParam):
            c = (n.read() or 0) + 1
            n.write(c)
            yield kv[0], float(w.start), c

    with B.pipeline() as p:
        out = (p | beam.Create([("a", 1), ("a", 2), ("a", 11)])
               | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
               | beam.WindowInto(window.FixedWindows(10))
               | beam.ParDo(Count()))
        B.assert_that(out, B.equal_to([("a", 0.0, 1), ("a", 0.0, 2), ("a", 10.0, 1)]))


def test_state_clear(B):
    beam = B.beam
    us, _, coders, _ = _mods(B)

    class Batches(beam.DoFn):
        BUF = us.BagStateSpec("buf", coders.VarIntCoder())

        def process(self, kv, buf=beam.DoFn.StateParam(BUF)):
            buf.add(kv[1])
            items = list(buf.read())
            if len(items) == 2:
                buf.clear()
                yield kv[0], sorted(items)

    with B.pipeline() as p:
        out = p | beam.Create([("a", 1), ("a", 1), ("a", 1), ("a", 1), ("a", 1)]) | beam.ParDo(Batches())
        B.assert_that(out, B.equal_to([("a", [1, 1]), ("a", [1, 1])]))


def test_ordered_list_state(ox):
    # Beam Python's DirectRunner has no ordered list state; Oxbeam's runner does.
    beam = ox.beam
    from oxbeam import coders
    from oxbeam.transforms import userstate as us
    from oxbeam.transforms.timeutil import TimeDomain

    class Sorted(beam.DoFn):
        EVENTS = us.OrderedListStateSpec("events", coders.StrUtf8Coder())
        T = us.TimerSpec("t", TimeDomain.WATERMARK)

        def process(self, kv, events=beam.DoFn.StateParam(EVENTS), t=beam.DoFn.TimerParam(T)):
            ts, name = kv[1]
            events.add((ts, name))
            t.set(100)

        @us.on_timer(T)
        def fired(self, key=beam.DoFn.KeyParam, events=beam.DoFn.StateParam(EVENTS)):
            yield key, [(float(ts), v) for ts, v in events.read()]
            yield key, [v for _, v in events.read_range(2, 5)]
            events.clear_range(0, 3)
            yield key, [v for _, v in events.read()]

    with ox.pipeline() as p:
        out = (p | beam.Create([("k", (4, "d")), ("k", (1, "a")), ("k", (3, "c")), ("k", (2, "b"))])
               | beam.ParDo(Sorted()))
        ox.assert_that(out, ox.equal_to([
            ("k", [(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "d")]),
            ("k", ["b", "c", "d"]),
            ("k", ["c", "d"]),
        ]))


@pytest.mark.parametrize("mode", ["in_process", "multi_processing"])
def test_map_state(ox, mode):
    # Oxbeam's MapStateSpec (Beam Java's MapState; Beam Python has none):
    # per user, the latest score per game and the games seen, flushed at
    # the end of the window; in multi-processing mode the state goes
    # through the Fn API State channel (multimap user state).
    beam = ox.beam
    from oxbeam import coders
    from oxbeam.options.pipeline_options import PipelineOptions
    from oxbeam.transforms import userstate as us
    from oxbeam.transforms.timeutil import TimeDomain

    class Latest(beam.DoFn):
        SCORES = us.MapStateSpec("scores", coders.StrUtf8Coder(), coders.VarIntCoder())
        T = us.TimerSpec("t", TimeDomain.WATERMARK)

        def process(self, kv, scores=beam.DoFn.StateParam(SCORES), t=beam.DoFn.TimerParam(T)):
            game, score = kv[1]
            first = scores.put_if_absent(game, score)
            if first is not None:
                scores.put(game, max(first, score))
            t.set(100)

        @us.on_timer(T)
        def flush(self, key=beam.DoFn.KeyParam, scores=beam.DoFn.StateParam(SCORES)):
            yield key, sorted(scores.items()), scores.get("chess", -1), scores.contains("go")
            yield key, sorted(scores.keys()), sorted(scores.values()), scores.read()
            scores.remove("go")
            yield key, "removed go", scores.read()
            scores.clear()
            yield key, scores.read()

    opts = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
                           if mode == "multi_processing" else [])
    with beam.Pipeline(options=opts) as p:
        events = [("ann", ("chess", 5)), ("bob", ("go", 1)), ("ann", ("go", 7)),
                  ("ann", ("chess", 3)), ("ann", ("chess", 9)), ("bob", ("poker", 2))]
        out = p | beam.Create(events) | beam.ParDo(Latest())
        ox.assert_that(out, ox.equal_to([
            ("ann", [("chess", 9), ("go", 7)], 9, True),
            ("ann", ["chess", "go"], [7, 9], {"chess": 9, "go": 7}),
            ("ann", "removed go", {"chess": 9}),
            ("ann", {}),
            ("bob", [("go", 1), ("poker", 2)], -1, True),
            ("bob", ["go", "poker"], [1, 2], {"go": 1, "poker": 2}),
            ("bob", "removed go", {"poker": 2}),
            ("bob", {}),
        ]))


def test_processing_time_timer_fires_in_batch(ox):
    # In batch, processing-time timers fire after the input, as Beam's model
    # has it; Beam Python's batch DirectRunner never fires them.
    B = ox
    beam = B.beam
    us, TimeDomain, _, _ = _mods(B)

    class Ping(beam.DoFn):
        T = us.TimerSpec("t", TimeDomain.REAL_TIME)

        def process(self, kv, t=beam.DoFn.TimerParam(T)):
            t.set(B.ts.Timestamp.now() + 1)

        @us.on_timer(T)
        def fired(self, key=beam.DoFn.KeyParam):
            yield "ping", key

    with B.pipeline() as p:
        out = p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(Ping())
        B.assert_that(out, B.equal_to([("ping", "a"), ("ping", "b")]))


def test_stateful_proto_as_beam_writes_it(ox):
    pb = pytest.importorskip(
        "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.beam_runner_api_pb2")
    beam = ox.beam
    from oxbeam import coders
    from oxbeam.transforms import userstate as us
    from oxbeam.transforms.timeutil import TimeDomain

    class F(beam.DoFn):
        V = us.ReadModifyWriteStateSpec("v", coders.VarIntCoder())
        B = us.BagStateSpec("b", coders.StrUtf8Coder())
        O = us.OrderedListStateSpec("o", coders.StrUtf8Coder())
        T = us.TimerSpec("t", TimeDomain.REAL_TIME)

        def process(self, kv, v=beam.DoFn.StateParam(V), b=beam.DoFn.StateParam(B),
                    o=beam.DoFn.StateParam(O), t=beam.DoFn.TimerParam(T)):
            pass

        @us.on_timer(T)
        def fired(self):
            pass

    p = beam.Pipeline()
    _ = p | beam.Create([("k", 1)]) | "S" >> beam.ParDo(F())
    proto = pb.Pipeline.FromString(p.to_runner_api_bytes())
    assert "beam:requirement:pardo:stateful:v1" in proto.requirements
    payload = pb.ParDoPayload.FromString(proto.components.transforms["S"].spec.payload)
    coders_ = proto.components.coders
    assert sorted(payload.state_specs) == ["b", "o", "v"]
    assert coders_[payload.state_specs["v"].read_modify_write_spec.coder_id].spec.urn == "beam:coder:varint:v1"
    assert payload.state_specs["v"].protocol.urn == "beam:user_state:bag:v1"
    assert payload.state_specs["o"].protocol.urn == "beam:user_state:ordered_list:v1"
    assert list(payload.timer_family_specs) == ["ts-t"]
    spec = payload.timer_family_specs["ts-t"]
    assert spec.time_domain == pb.TimeDomain.PROCESSING_TIME
    timer_coder = coders_[spec.timer_family_coder_id]
    assert timer_coder.spec.urn == "beam:coder:timer:v1"
    assert [coders_[c].spec.urn for c in timer_coder.component_coder_ids] == [
        "beam:coder:string_utf8:v1", "beam:coder:global_window:v1"]


def test_stateful_dofn_validation(ox):
    beam = ox.beam
    from oxbeam.transforms import userstate as us
    from oxbeam.transforms.timeutil import TimeDomain

    class NoCallback(beam.DoFn):
        T = us.TimerSpec("t", TimeDomain.WATERMARK)

        def process(self, kv, t=beam.DoFn.TimerParam(T)):
            pass

    with pytest.raises(ValueError, match="without an associated on_timer"):
        beam.ParDo(NoCallback())
    with pytest.raises(ValueError, match="Unsupported TimeDomain"):
        us.TimerSpec("t", "nope")
    with pytest.raises(TypeError, match="coder"):
        us.BagStateSpec("b", int)

    class Keyless(beam.DoFn):
        S = us.BagStateSpec("s", ox.beam.coders.VarIntCoder())

        def process(self, x, s=beam.DoFn.StateParam(S)):
            pass

    with pytest.raises(TypeError, match="must be \\(key, value\\) pairs"):
        _ = beam.Pipeline() | beam.Create([1, 2]) | beam.ParDo(Keyless())


def test_user_error_in_on_timer_names_the_transform(ox):
    beam = ox.beam
    from oxbeam.transforms import userstate as us
    from oxbeam.transforms.timeutil import TimeDomain

    class Boom(beam.DoFn):
        T = us.TimerSpec("t", TimeDomain.WATERMARK)

        def process(self, kv, t=beam.DoFn.TimerParam(T)):
            t.set(1)

        @us.on_timer(T)
        def fired(self, key=beam.DoFn.KeyParam):
            raise ZeroDivisionError("boom in timer")

    p = ox.pipeline()
    _ = p | beam.Create([("k", 1)]) | "Boom" >> beam.ParDo(Boom())
    with pytest.raises(ZeroDivisionError, match="boom in timer") as e:
        p.run()
    assert e.value.transform == "Boom"


def _sessionize_stream(B, last):
    """A stateful DoFn on the streaming engine: event-time timers fire as
    the TestStream's watermark passes them."""
    beam = B.beam
    us, TimeDomain, coders, window = _mods(B)
    TestStream = importlib.import_module(B.name + ".testing.test_stream").TestStream
    TV = window.TimestampedValue

    class Sessionize(beam.DoFn):
        BUF = us.BagStateSpec("buf", coders.VarIntCoder())
        GAP = us.TimerSpec("gap", TimeDomain.WATERMARK)

        def process(self, kv, buf=beam.DoFn.StateParam(BUF), gap=beam.DoFn.TimerParam(GAP),
                    ts=beam.DoFn.TimestampParam):
            buf.add(kv[1])
            gap.set(ts + 10)

        @us.on_timer(GAP)
        def flush(self, key=beam.DoFn.KeyParam, buf=beam.DoFn.StateParam(BUF), ts=beam.DoFn.TimestampParam):
            yield key, sorted(buf.read()), float(ts)
            buf.clear()

    stream = (TestStream()
              .add_elements([TV(("a", 1), 1), TV(("b", 2), 2)])
              .advance_watermark_to(5)
              .add_elements([TV(("a", 6), 6)])
              .advance_watermark_to(30))
    if last:
        stream.add_elements([TV(("a", 40), 40)])
    stream.advance_watermark_to_infinity()
    p = B.beam.Pipeline(options=B.options.PipelineOptions(["--streaming"]))
    return p, p | stream | beam.ParDo(Sessionize())


def test_stateful_dofn_with_test_stream(B):
    p, out = _sessionize_stream(B, last=False)
    B.assert_that(out, B.equal_to([("a", [1, 6], 16.0), ("b", [2], 12.0)]))
    p.run().wait_until_finish()


def test_stateful_dofn_timer_fires_at_end_of_stream(ox):
    # The final watermark advance to +inf fires the pending timer (Beam
    # Python's streaming DirectRunner drops it).
    p, out = _sessionize_stream(ox, last=True)
    ox.assert_that(out, ox.equal_to([("a", [1, 6], 16.0), ("b", [2], 12.0), ("a", [40], 50.0)]))
    p.run().wait_until_finish()


def test_processing_time_timer_with_test_stream(B):
    """A processing-time timer fires when the TestStream's synthetic clock
    (starting at 0) passes it, between the element events."""
    beam = B.beam
    us, TimeDomain, coders, window = _mods(B)
    TestStream = importlib.import_module(B.name + ".testing.test_stream").TestStream

    class Batch(beam.DoFn):
        BUF = us.BagStateSpec("buf", coders.VarIntCoder())
        FLUSH = us.TimerSpec("flush", TimeDomain.REAL_TIME)

        def process(self, kv, buf=beam.DoFn.StateParam(BUF), flush=beam.DoFn.TimerParam(FLUSH)):
            buf.add(kv[1])
            flush.set(5)

        @us.on_timer(FLUSH)
        def on_flush(self, key=beam.DoFn.KeyParam, buf=beam.DoFn.StateParam(BUF)):
            yield key, sorted(buf.read())
            buf.clear()

    stream = (TestStream()
              .add_elements([("a", 1), ("a", 2)])
              .advance_processing_time(6)
              .add_elements([("a", 3)])
              .advance_processing_time(6)
              .advance_watermark_to_infinity())
    with B.beam.Pipeline(options=B.options.PipelineOptions(["--streaming"])) as p:
        out = p | stream | beam.ParDo(Batch())
        B.assert_that(out, B.equal_to([("a", [1, 2]), ("a", [3])]))


def test_stateful_dofn_with_extra_args_and_tagged_output(B):
    beam = B.beam
    us, _, coders, _ = _mods(B)

    class FirstSeen(beam.DoFn):
        SEEN = us.ReadModifyWriteStateSpec("seen", coders.BooleanCoder())

        def process(self, kv, limit, seen=beam.DoFn.StateParam(SEEN)):
            if seen.read():
                yield beam.pvalue.TaggedOutput("repeat", kv)
            else:
                seen.write(True)
                if kv[1] <= limit:
                    yield kv

    with B.pipeline() as p:
        # (Beam's DirectRunner sometimes checks the side input for KV pairs
        # instead of the main input, so Beam gets a plain extra argument.)
        limit = 10 if B.name == "apache_beam" else beam.pvalue.AsSingleton(p | "Limit" >> beam.Create([10]))
        res = (p | beam.Create([("a", 1), ("a", 2), ("b", 20), ("c", 3), ("b", 4)])
               | beam.ParDo(FirstSeen(), limit).with_outputs("repeat", main="first"))
        B.assert_that(res.first, B.equal_to([("a", 1), ("c", 3)]), label="first")
        B.assert_that(res.repeat, B.equal_to([("a", 2), ("b", 4)]), label="repeat")
