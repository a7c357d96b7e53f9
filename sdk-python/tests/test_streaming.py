"""Triggers, panes and TestStream: exact panes on Oxbeam, and the same panes
on Apache Beam's DirectRunner wherever it runs the pipeline.

Oxbeam applies Beam Python's pane rules to Python pipelines (a pane exactly
when the trigger fires, none when a window expires), so the panes are Beam
Python's. The Oxbeam-only tests cover what Beam Python cannot run: retracting
panes, and repeated processing-time triggers its streaming DirectRunner does
not finish.
"""

import importlib
import json

import pytest

TIMING = ["EARLY", "ON_TIME", "LATE", "UNKNOWN"]


def _mods(B):
    n = B.name
    return (
        importlib.import_module(n + ".transforms.trigger"),
        importlib.import_module(n + ".transforms.window"),
        importlib.import_module(n + ".testing.test_stream").TestStream,
    )


def _streaming(B):
    return B.beam.Pipeline(options=B.options.PipelineOptions(["--streaming"]))


def _fmt(B):
    beam = B.beam

    class FormatPane(beam.DoFn):
        def process(self, kv, pane=beam.DoFn.PaneInfoParam, w=beam.DoFn.WindowParam):
            k, v = kv
            if isinstance(v, (list, tuple)) or hasattr(v, "__iter__") and not isinstance(v, str):
                v = sorted(v)
            yield (k, v, TIMING[pane.timing], pane.index, pane.is_first, pane.is_last, float(w.start))

    return FormatPane()


def _timestamped(B, p, trig, mode, data, label=""):
    beam = B.beam
    trigger, window, _ = _mods(B)
    return (
        p
        | (label + "Create") >> beam.Create(data)
        | (label + "Stamp") >> beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
        | (label + "Window") >> beam.WindowInto(window.FixedWindows(10), trigger=trig, accumulation_mode=mode)
    )


DATA = [("a", 1), ("a", 2), ("a", 3), ("b", 4), ("b", 5), ("a", 11), ("a", 12)]


# -- triggers in batch --------------------------------------------------------


def test_after_watermark_early_firings_discarding_batch(B):
    trigger, window, _ = _mods(B)
    beam = B.beam
    with B.pipeline() as p:
        out = (_timestamped(B, p, trigger.AfterWatermark(early=trigger.AfterCount(1)),
                                trigger.AccumulationMode.DISCARDING, DATA)
               | beam.GroupByKey() | beam.ParDo(_fmt(B)))
        B.assert_that(out, B.equal_to([
            ("a", [1, 2, 3], "EARLY", 0, True, False, 0.0),
            ("a", [], "ON_TIME", 1, False, True, 0.0),
            ("a", [11, 12], "EARLY", 0, True, False, 10.0),
            ("a", [], "ON_TIME", 1, False, True, 10.0),
            ("b", [4, 5], "EARLY", 0, True, False, 0.0),
            ("b", [], "ON_TIME", 1, False, True, 0.0),
        ]))


def test_after_watermark_early_firings_accumulating_batch(B):
    trigger, window, _ = _mods(B)
    beam = B.beam
    with B.pipeline() as p:
        out = (_timestamped(B, p, trigger.AfterWatermark(early=trigger.AfterCount(1)),
                                trigger.AccumulationMode.ACCUMULATING, DATA)
               | beam.GroupByKey() | beam.ParDo(_fmt(B)))
        B.assert_that(out, B.equal_to([
            ("a", [1, 2, 3], "EARLY", 0, True, False, 0.0),
            ("a", [1, 2, 3], "ON_TIME", 1, False, True, 0.0),
            ("a", [11, 12], "EARLY", 0, True, False, 10.0),
            ("a", [11, 12], "ON_TIME", 1, False, True, 10.0),
            ("b", [4, 5], "EARLY", 0, True, False, 0.0),
            ("b", [4, 5], "ON_TIME", 1, False, True, 0.0),
        ]))


def test_repeatedly_after_count_accumulating_batch(B):
    # The early pane when the count is reached (the whole bundle), and no
    # pane when the window closes (Java's runners would add an on-time one,
    # and emit "c", which never reached the count).
    trigger, window, _ = _mods(B)
    beam = B.beam
    with B.pipeline() as p:
        out = (_timestamped(B, p, trigger.Repeatedly(trigger.AfterCount(2)),
                                trigger.AccumulationMode.ACCUMULATING, DATA + [("c", 7)])
               | beam.GroupByKey() | beam.ParDo(_fmt(B)))
        B.assert_that(out, B.equal_to([
            ("a", [1, 2, 3], "EARLY", 0, True, False, 0.0),
            ("a", [11, 12], "EARLY", 0, True, False, 10.0),
            ("b", [4, 5], "EARLY", 0, True, False, 0.0),
        ]))


def test_after_count_or_finally_and_always_batch(B):
    # Always fires early, on the batch's input watermark, in a fixed window
    # (in the global window it is Beam's Reshuffle: one on-time pane).
    trigger, window, _ = _mods(B)
    beam = B.beam
    with B.pipeline("--allow_unsafe_triggers") as p:
        grouped = {}
        for name, trig in [
            ("or", trigger.OrFinally(trigger.Repeatedly(trigger.AfterCount(1)), trigger.AfterCount(2))),
            ("always", trigger.Always()),
        ]:
            grouped[name] = (_timestamped(B, p, trig, trigger.AccumulationMode.DISCARDING, DATA, name)
                             | ("G" + name) >> beam.GroupByKey() | ("F" + name) >> beam.ParDo(_fmt(B)))
        B.assert_that(grouped["or"], B.equal_to([
            ("a", [1, 2, 3], "EARLY", 0, True, True, 0.0),
            ("a", [11, 12], "EARLY", 0, True, True, 10.0),
            ("b", [4, 5], "EARLY", 0, True, True, 0.0),
        ]), label="or")
        B.assert_that(grouped["always"], B.equal_to([
            ("a", [1, 2, 3], "EARLY", 0, True, False, 0.0),
            ("a", [11, 12], "EARLY", 0, True, False, 10.0),
            ("b", [4, 5], "EARLY", 0, True, False, 0.0),
        ]), label="always")


def test_combine_after_trigger_keeps_panes(B):
    trigger, window, _ = _mods(B)
    beam = B.beam
    with B.pipeline() as p:
        out = (_timestamped(B, p, trigger.AfterWatermark(early=trigger.AfterCount(1)),
                                trigger.AccumulationMode.ACCUMULATING, DATA)
               | beam.CombinePerKey(sum) | beam.ParDo(_fmt(B)))
        B.assert_that(out, B.equal_to([
            ("a", 6, "EARLY", 0, True, False, 0.0),
            ("a", 6, "ON_TIME", 1, False, True, 0.0),
            ("a", 23, "EARLY", 0, True, False, 10.0),
            ("a", 23, "ON_TIME", 1, False, True, 10.0),
            ("b", 9, "EARLY", 0, True, False, 0.0),
            ("b", 9, "ON_TIME", 1, False, True, 0.0),
        ]))


def test_pane_info_of_default_trigger(B):
    beam = B.beam
    trigger, window, _ = _mods(B)

    class Pane(beam.DoFn):
        def process(self, e, pane=beam.DoFn.PaneInfoParam):
            # (Beam Python's batch GroupByKey leaves is_last unset.)
            yield (e[0], pane.is_first, TIMING[pane.timing], pane.index, pane.nonspeculative_index)

    with B.pipeline() as p:
        out = (p | beam.Create([("a", 1), ("a", 2)])
               | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
               | beam.WindowInto(window.FixedWindows(10)) | beam.GroupByKey() | beam.ParDo(Pane()))
        unfired = p | "U" >> beam.Create([1]) | "P" >> beam.Map(
            lambda x, pane=beam.DoFn.PaneInfoParam: (pane.is_first, pane.is_last, TIMING[pane.timing]))
        B.assert_that(out, B.equal_to([("a", True, "ON_TIME", 0, 0)]))
        B.assert_that(unfired, B.equal_to([(True, True, "UNKNOWN")]), label="unfired")


# -- the protos -----------------------------------------------------------------


def _strategy_of(beam_mod, window_mod, trig, mode, **kw):
    p = beam_mod.Pipeline()
    _ = p | beam_mod.Create([1]) | beam_mod.WindowInto(window_mod.FixedWindows(60), trigger=trig,
                                                      accumulation_mode=mode, **kw)
    return p


@pytest.mark.parametrize("make", [
    lambda t: t.DefaultTrigger(),
    lambda t: t.AfterWatermark(early=t.AfterProcessingTime(10), late=t.AfterCount(1)),
    lambda t: t.Repeatedly(t.AfterCount(3)),
    lambda t: t.AfterAny(t.AfterCount(2), t.AfterProcessingTime(5)),
    lambda t: t.AfterAll(t.AfterCount(2), t.AfterWatermark()),
    lambda t: t.AfterEach(t.AfterCount(2), t.AfterWatermark()),
    lambda t: t.OrFinally(t.Repeatedly(t.AfterCount(1)), t.AfterCount(5)),
    lambda t: t.Always(),
    lambda t: t._Never(),
])
def test_trigger_protos_match_beam(make):
    """Oxbeam writes the same Trigger proto (and continuation) as Beam Python."""
    pb = pytest.importorskip(
        "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.beam_runner_api_pb2")
    from google.protobuf import json_format

    import apache_beam.transforms.trigger as bt

    import oxbeam.transforms.trigger as ot

    ours = json_format.ParseDict(make(ot).to_runner_api(), pb.Trigger())
    theirs = make(bt).to_runner_api(None)
    assert ours == theirs
    ours_c = json_format.ParseDict(make(ot).get_continuation_trigger().to_runner_api(), pb.Trigger())
    assert ours_c == make(bt).get_continuation_trigger().to_runner_api(None)


def test_windowing_strategy_proto(ox):
    pb = pytest.importorskip(
        "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.beam_runner_api_pb2")
    beam = ox.beam
    from oxbeam.transforms import trigger

    p = beam.Pipeline()
    _ = (p | beam.Create([("k", 1)])
         | beam.WindowInto(beam.window.FixedWindows(60), trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                           accumulation_mode=trigger.AccumulationMode.RETRACTING,
                           timestamp_combiner=beam.window.TimestampCombiner.OUTPUT_AT_EARLIEST,
                           allowed_lateness=300)
         | beam.GroupByKey())
    proto = pb.Pipeline.FromString(p.to_runner_api_bytes())
    strategies = [s for s in proto.components.windowing_strategies.values()
                  if s.accumulation_mode == 3]
    assert len(strategies) == 1
    s = strategies[0]
    assert s.allowed_lateness == 300000
    assert s.output_time == pb.OutputTime.EARLIEST_IN_PANE
    assert s.on_time_behavior == pb.OnTimeBehavior.FIRE_ALWAYS
    assert s.trigger.after_end_of_window.late_firings.element_count.element_count == 1
    with pytest.raises(ValueError, match="accumulation_mode"):
        beam.WindowInto(beam.window.FixedWindows(60), trigger=trigger.AfterCount(1))


def test_test_stream_proto(ox):
    pb = pytest.importorskip(
        "apache_beam.portability.api.org.apache.beam.model.pipeline.v1.beam_runner_api_pb2")
    beam = ox.beam
    from oxbeam.testing.test_stream import TestStream

    p = beam.Pipeline()
    _ = p | "S" >> (TestStream().advance_watermark_to(10).add_elements(["x", beam.window.TimestampedValue("y", 3)])
                    .advance_processing_time(2.5).advance_watermark_to_infinity())
    proto = pb.Pipeline.FromString(p.to_runner_api_bytes())
    t = proto.components.transforms["S"]
    assert t.spec.urn == "beam:transform:teststream:v1"
    payload = pb.TestStreamPayload.FromString(t.spec.payload)
    assert proto.components.coders[payload.coder_id].spec.urn == "beam:coder:string_utf8:v1"
    kinds = [e.WhichOneof("event") for e in payload.events]
    assert kinds == ["watermark_event", "element_event", "processing_time_event", "watermark_event"]
    els = payload.events[1].element_event.elements
    assert [(e.encoded_element, e.timestamp) for e in els] == [(b"x", 10000), (b"y", 3000)]
    assert payload.events[2].processing_time_event.advance_duration == 2500
    out = proto.components.pcollections[t.outputs["None"]]
    assert out.is_bounded == pb.IsBounded.UNBOUNDED


# -- TestStream -----------------------------------------------------------------


def _team_score(B, mode):
    beam = B.beam
    trigger, window, TestStream = _mods(B)
    TV = window.TimestampedValue
    stream = (TestStream()
              .advance_watermark_to(0)
              .add_elements([TV(("blue", 3), 3), TV(("red", 1), 5)])
              .advance_processing_time(30)
              .add_elements([TV(("blue", 2), 20)])
              .advance_watermark_to(70)  # [0, 60) is on time
              .add_elements([TV(("blue", 5), 45)])  # late, within allowed lateness
              .add_elements([TV(("red", 4), 61)])
              .advance_watermark_to(130)
              .advance_watermark_to_infinity())
    p = _streaming(B)
    out = (p | stream
           | beam.WindowInto(window.FixedWindows(60),
                             trigger=trigger.AfterWatermark(early=trigger.AfterCount(1), late=trigger.AfterCount(1)),
                             accumulation_mode=mode, allowed_lateness=120)
           | beam.CombinePerKey(sum) | beam.ParDo(_fmt(B)))
    return p, out


def test_team_score_discarding(B):
    trigger, _, _ = _mods(B)
    p, out = _team_score(B, trigger.AccumulationMode.DISCARDING)
    B.assert_that(out, B.equal_to([
        ("blue", 3, "EARLY", 0, True, False, 0.0),
        ("blue", 2, "EARLY", 1, False, False, 0.0),
        ("blue", 0, "ON_TIME", 2, False, False, 0.0),
        ("blue", 5, "LATE", 3, False, False, 0.0),
        ("red", 1, "EARLY", 0, True, False, 0.0),
        ("red", 0, "ON_TIME", 1, False, False, 0.0),
        ("red", 4, "EARLY", 0, True, False, 60.0),
        ("red", 0, "ON_TIME", 1, False, False, 60.0),
    ]))
    p.run().wait_until_finish()


def test_team_score_accumulating(B):
    trigger, _, _ = _mods(B)
    p, out = _team_score(B, trigger.AccumulationMode.ACCUMULATING)
    B.assert_that(out, B.equal_to([
        ("blue", 3, "EARLY", 0, True, False, 0.0),
        ("blue", 5, "EARLY", 1, False, False, 0.0),
        ("blue", 5, "ON_TIME", 2, False, False, 0.0),
        ("blue", 10, "LATE", 3, False, False, 0.0),
        ("red", 1, "EARLY", 0, True, False, 0.0),
        ("red", 1, "ON_TIME", 1, False, False, 0.0),
        ("red", 4, "EARLY", 0, True, False, 60.0),
        ("red", 4, "ON_TIME", 1, False, False, 60.0),
    ]))
    p.run().wait_until_finish()


def test_team_score_retracting(ox):
    """RETRACTING (Oxbeam): every pane after the first is preceded by the
    retraction of the previous one; a retraction carries the retracted
    values and the new pane's info."""
    B = ox
    beam = B.beam
    trigger, window, TestStream = _mods(B)
    TV = window.TimestampedValue
    stream = (TestStream()
              .advance_watermark_to(0)
              .add_elements([TV(("blue", 3), 3)])
              .add_elements([TV(("blue", 2), 20)])
              .advance_watermark_to(70)
              .add_elements([TV(("blue", 5), 45)])
              .advance_watermark_to_infinity())

    class Fmt(beam.DoFn):
        def process(self, kv, pane=beam.DoFn.PaneInfoParam):
            yield ("-" if pane.is_retraction else "+", kv[0], sorted(kv[1]), TIMING[pane.timing], pane.index)

    p = _streaming(B)
    out = (p | stream
           | beam.WindowInto(window.FixedWindows(60),
                             trigger=trigger.AfterWatermark(early=trigger.AfterCount(1), late=trigger.AfterCount(1)),
                             accumulation_mode=trigger.AccumulationMode.RETRACTING, allowed_lateness=120)
           | beam.GroupByKey() | beam.ParDo(Fmt()))
    B.assert_that(out, B.equal_to([
        ("+", "blue", [3], "EARLY", 0),
        ("-", "blue", [3], "EARLY", 1),
        ("+", "blue", [2, 3], "EARLY", 1),
        ("-", "blue", [2, 3], "ON_TIME", 2),
        ("+", "blue", [2, 3], "ON_TIME", 2),
        ("-", "blue", [2, 3], "LATE", 3),
        ("+", "blue", [2, 3, 5], "LATE", 3),
    ]))
    p.run().wait_until_finish()


def test_sessions_late_element_merges_sessions(B):
    beam = B.beam
    trigger, window, TestStream = _mods(B)
    TV = window.TimestampedValue
    stream = (TestStream()
              .advance_watermark_to(0)
              .add_elements([TV(("u", 1), 1), TV(("u", 2), 15)])
              .advance_watermark_to(40)  # sessions [1, 11) and [15, 25) close
              .add_elements([TV(("u", 3), 8)])  # late: [8, 18) bridges them
              .advance_watermark_to_infinity())
    with _streaming(B) as p:
        out = (p | stream
               | beam.WindowInto(window.Sessions(10), trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                                 accumulation_mode=trigger.AccumulationMode.ACCUMULATING, allowed_lateness=100)
               | beam.GroupByKey() | beam.ParDo(_fmt(B)))
        B.assert_that(out, B.equal_to([
            ("u", [1], "ON_TIME", 0, True, False, 1.0),
            ("u", [2], "ON_TIME", 0, True, False, 15.0),
            ("u", [1, 2, 3], "LATE", 0, True, False, 1.0),
        ]))


def test_processing_time_trigger(ox):
    # Two processing-time firings; the last element's deadline never comes,
    # so it is not emitted (Beam Python's rules; Java's runners emit it when
    # the global window closes). Beam Python's streaming DirectRunner does
    # not finish this pipeline.
    B = ox
    beam = B.beam
    trigger, window, TestStream = _mods(B)
    stream = (TestStream()
              .add_elements([("k", 1), ("k", 2)])
              .advance_processing_time(6)
              .add_elements([("k", 3)])
              .advance_processing_time(6)
              .add_elements([("k", 4)])
              .advance_watermark_to_infinity())
    with _streaming(B) as p:
        out = (p | stream
               | beam.WindowInto(window.GlobalWindows(), trigger=trigger.Repeatedly(trigger.AfterProcessingTime(5)),
                                 accumulation_mode=trigger.AccumulationMode.DISCARDING)
               | beam.GroupByKey()
               | beam.ParDo(_fmt(B))
               | beam.Map(lambda t: t[:6]))
        B.assert_that(out, B.equal_to([
            ("k", [1, 2], "EARLY", 0, True, False),
            ("k", [3], "EARLY", 1, False, False),
        ]))


def test_test_stream_default_trigger_drops_late_data(B):
    beam = B.beam
    trigger, window, TestStream = _mods(B)
    TV = window.TimestampedValue
    stream = (TestStream()
              .add_elements([TV("a", 1), TV("b", 2), TV("c", 12)])
              .advance_watermark_to(20)
              .add_elements([TV("late", 5)])  # window [0, 10) expired: dropped
              .advance_watermark_to_infinity())
    with _streaming(B) as p:
        out = (p | stream | beam.WindowInto(window.FixedWindows(10))
               | beam.Map(lambda x: (x, 1)) | beam.CombinePerKey(sum)
               | beam.Map(lambda kv, w=beam.DoFn.WindowParam: (kv[0], kv[1], float(w.start))))
        B.assert_that(out, B.equal_to([("a", 1, 0.0), ("b", 1, 0.0), ("c", 1, 10.0)]))


def test_streaming_option_runs_bounded_pipeline(B):
    beam = B.beam
    with _streaming(B) as p:
        out = p | beam.Create([("a", 1), ("b", 2), ("a", 3)]) | beam.CombinePerKey(sum)
        B.assert_that(out, B.equal_to([("a", 4), ("b", 2)]))


def test_windowing_is_beam_like(ox):
    beam = ox.beam
    from oxbeam.transforms import trigger

    p = beam.Pipeline()
    pc = p | beam.Create([("k", 1)]) | beam.WindowInto(
        beam.window.FixedWindows(60), trigger=trigger.AfterProcessingTime(5),
        accumulation_mode=trigger.AccumulationMode.DISCARDING)
    assert isinstance(pc.windowing, beam.Windowing)
    assert pc.windowing.windowfn == beam.window.FixedWindows(60)
    grouped = pc | beam.GroupByKey()
    # As in Beam: a grouping continues its input's trigger.
    assert repr(grouped.windowing.triggerfn) == "_AfterSynchronizedProcessingTime()"
    again = pc | "Again" >> beam.WindowInto(pc.windowing)
    assert again.windowing == pc.windowing
    json.dumps(p.to_runner_api_json())


def test_retractions_written_to_text_with_a_minus(ox, tmp_path):
    beam = ox.beam
    trigger, window, TestStream = _mods(ox)
    TV = window.TimestampedValue
    stream = (TestStream()
              .add_elements([TV(("k", 1), 1)])
              .add_elements([TV(("k", 2), 2)])
              .advance_watermark_to_infinity())
    prefix = str(tmp_path / "out")
    with _streaming(ox) as p:
        _ = (p | stream
             | beam.WindowInto(window.FixedWindows(60), trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                               accumulation_mode=trigger.AccumulationMode.RETRACTING)
             | beam.CombinePerKey(sum)
             | beam.Map(lambda kv: "%s=%d" % kv)
             | beam.io.WriteToText(prefix, shard_name_template=""))
    with open(prefix) as f:
        lines = sorted(f.read().split())
    # Panes: k=1 (early); the retraction of k=1, then k=3 (early). No pane
    # when the window closes (Beam Python's rules).
    assert lines == sorted(["k=1", "-k=1", "k=3"])


@pytest.mark.parametrize("combiner, expected", [
    ("OUTPUT_AT_EARLIEST", [("a", [1, 4], 1.0), ("b", [3], 3.0), ("a", [12], 12.0)]),
    ("OUTPUT_AT_LATEST", [("a", [1, 4], 4.0), ("b", [3], 3.0), ("a", [12], 12.0)]),
    ("OUTPUT_AT_EOW", [("a", [1, 4], 9.999), ("b", [3], 9.999), ("a", [12], 19.999)]),
])
def test_timestamp_combiners(B, combiner, expected):
    beam = B.beam
    _, window, _ = _mods(B)
    with B.pipeline() as p:
        out = (p | beam.Create([("a", 1), ("a", 4), ("b", 3), ("a", 12)])
               | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
               | beam.WindowInto(window.FixedWindows(10),
                                 timestamp_combiner=getattr(window.TimestampCombiner, combiner))
               | beam.GroupByKey()
               | beam.Map(lambda kv, ts=beam.DoFn.TimestampParam: (kv[0], sorted(kv[1]), float(ts))))
        B.assert_that(out, B.equal_to(expected))


def test_after_any_and_after_all_batch(B):
    # (Beam Python refuses these "unsafe" finishing triggers by default.)
    ox = B
    beam = ox.beam
    trigger, window, _ = _mods(ox)
    with ox.pipeline("--allow_unsafe_triggers") as p:
        src = (p | beam.Create([("a", 1), ("a", 4), ("b", 3), ("a", 12)])
               | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1])))
        outs = {}
        for name, trig in [("any", trigger.AfterAny(trigger.AfterCount(2), trigger.AfterWatermark())),
                           ("all", trigger.AfterAll(trigger.AfterCount(2), trigger.AfterWatermark()))]:
            outs[name] = (src
                          | name >> beam.WindowInto(window.FixedWindows(10), trigger=trig,
                                                    accumulation_mode=trigger.AccumulationMode.DISCARDING)
                          | ("G" + name) >> beam.GroupByKey()
                          | ("F" + name) >> beam.ParDo(_fmt(ox)))
        # AfterAny: the count fires early for "a" in [0, 10); the watermark
        # fires the others on time. AfterAll: "a" in [0, 10) waits for the
        # watermark; the others never reach the count, so they are not emitted.
        ox.assert_that(outs["any"], ox.equal_to([
            ("a", [1, 4], "EARLY", 0, True, True, 0.0),
            ("a", [12], "ON_TIME", 0, True, True, 10.0),
            ("b", [3], "ON_TIME", 0, True, True, 0.0),
        ]), label="CheckAny")
        ox.assert_that(outs["all"], ox.equal_to([
            ("a", [1, 4], "ON_TIME", 0, True, True, 0.0),
        ]), label="CheckAll")


def test_reshuffle_in_streaming_keeps_late_data(ox):
    # As Beam Java's Reshuffle (infinite allowed lateness); Beam Python's
    # DirectRunner drops the late element in its Reshuffle.
    B = ox
    beam = B.beam
    trigger, window, TestStream = _mods(B)
    TV = window.TimestampedValue
    stream = (TestStream()
              .add_elements([TV("a", 1), TV("b", 2)])
              .advance_watermark_to(20)
              .add_elements([TV("late", 5)])  # late for [0, 10), but Reshuffle keeps it
              .advance_watermark_to_infinity())
    with _streaming(B) as p:
        out = (p | stream
               | beam.WindowInto(window.FixedWindows(10))  # allowed lateness 0
               | beam.Reshuffle()
               | beam.Map(lambda x, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam:
                          (x, float(ts), float(w.start))))
        B.assert_that(out, B.equal_to([("a", 1.0, 0.0), ("b", 2.0, 0.0), ("late", 5.0, 0.0)]))


def test_reshuffle_of_triggered_accumulating_input_does_not_duplicate(ox):
    beam = ox.beam
    trigger, window, _ = _mods(ox)
    with ox.pipeline() as p:
        out = (_timestamped(ox, p, trigger.AfterWatermark(early=trigger.AfterCount(1)),
                            trigger.AccumulationMode.ACCUMULATING, DATA)
               | beam.Reshuffle()
               | beam.Map(lambda kv, w=beam.DoFn.WindowParam: (kv[0], kv[1], float(w.start))))
        ox.assert_that(out, ox.equal_to([(k, v, float(v // 10 * 10)) for k, v in DATA]))


def test_streaming_combine_fn_over_many_small_bundles(B):
    # Six TestStream events over 100 keys: on Oxbeam each is a bundle whose
    # precombine gives one accumulator per key; the lifted combine's
    # GroupByKey merges them with the CombineFn before the window fires
    # (counter oxbeam/compacted_accumulators). Panes are Beam's.
    beam = B.beam
    _, window, TestStream = _mods(B)
    TV = window.TimestampedValue

    class MeanFn(beam.CombineFn):
        def create_accumulator(self):
            return (0, 0)

        def add_input(self, acc, x):
            return acc[0] + x, acc[1] + 1

        def merge_accumulators(self, accs):
            accs = list(accs)
            return sum(a[0] for a in accs), sum(a[1] for a in accs)

        def extract_output(self, acc):
            return acc[0] / acc[1]

    keys = ["k%03d" % k for k in range(100)]
    stream = TestStream()
    for ts in range(1, 7):
        stream = stream.add_elements([TV((k, ts * 10), ts) for k in keys])
    stream = stream.advance_watermark_to_infinity()
    p = _streaming(B)
    out = (p | stream | beam.WindowInto(window.FixedWindows(10))
           | beam.CombinePerKey(MeanFn()))
    B.assert_that(out, B.equal_to([(k, 35.0) for k in keys]))
    result = p.run()
    result.wait_until_finish()
    if B.name == "oxbeam":
        compacted = [c.committed for c in result.metrics().query()["counters"]
                     if c.key.metric.name == "compacted_accumulators"]
        assert compacted == [300]
