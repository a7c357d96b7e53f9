"""Beam Python stateful DoFns (user state and timers) on Beam's DirectRunner
and on Oxbeam (LOOPBACK), with exact output: the runner serves user state
over the State API and exchanges timers on the data channel."""

import apache_beam as beam
from apache_beam.coders import StrUtf8Coder, VarIntCoder
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate, window
from apache_beam.transforms.timeutil import TimeDomain

from helpers import run_both


class RunningCount(beam.DoFn):
    COUNT = userstate.ReadModifyWriteStateSpec('count', VarIntCoder())

    def process(self, kv, count=beam.DoFn.StateParam(COUNT)):
        n = (count.read() or 0) + kv[1]
        count.write(n)
        yield kv[0], n


def running_count(p):
    out = (p
           | beam.Create([('a', 1), ('b', 10), ('a', 1), ('a', 1), ('b', 10)])
           | beam.ParDo(RunningCount()))
    assert_that(out, equal_to([('a', 1), ('a', 2), ('a', 3), ('b', 10), ('b', 20)]))


class BufferUntilWindowEnd(beam.DoFn):
    BUFFER = userstate.BagStateSpec('buffer', VarIntCoder())
    FLUSH = userstate.TimerSpec('flush', TimeDomain.WATERMARK)

    def process(self, kv, w=beam.DoFn.WindowParam,
                buffer=beam.DoFn.StateParam(BUFFER),
                flush=beam.DoFn.TimerParam(FLUSH)):
        buffer.add(kv[1])
        flush.set(w.max_timestamp())

    @userstate.on_timer(FLUSH)
    def on_flush(self, key=beam.DoFn.KeyParam, w=beam.DoFn.WindowParam,
                 buffer=beam.DoFn.StateParam(BUFFER)):
        values = sorted(buffer.read())
        buffer.clear()
        yield key, int(w.start), values


def bag_state_and_event_time_timer(p):
    out = (p
           | beam.Create([('a', 3), ('a', 1), ('b', 7), ('a', 12), ('b', 15), ('a', 2)])
           | beam.Map(lambda kv: window.TimestampedValue(kv, kv[1]))
           | beam.WindowInto(window.FixedWindows(10))
           | beam.ParDo(BufferUntilWindowEnd()))
    assert_that(out, equal_to([
        ('a', 0, [1, 2, 3]), ('a', 10, [12]), ('b', 0, [7]), ('b', 10, [15])]))


class Debounce(beam.DoFn):
    """Each element (re)sets the key's timer to 10 s after the latest
    timestamp seen; a negative value clears it for good. Independent of the
    order elements arrive in."""
    TIMER = userstate.TimerSpec('debounce', TimeDomain.WATERMARK)
    LATEST = userstate.ReadModifyWriteStateSpec('latest', VarIntCoder())
    CLEARED = userstate.ReadModifyWriteStateSpec('cleared', VarIntCoder())

    def process(self, kv, timer=beam.DoFn.TimerParam(TIMER),
                latest=beam.DoFn.StateParam(LATEST),
                cleared=beam.DoFn.StateParam(CLEARED)):
        if kv[1] < 0:
            cleared.write(1)
            timer.clear()
        elif not cleared.read():
            n = max(latest.read() or 0, kv[1])
            latest.write(n)
            timer.set(n + 10)

    @userstate.on_timer(TIMER)
    def fire(self, key=beam.DoFn.KeyParam, ts=beam.DoFn.TimestampParam,
             latest=beam.DoFn.StateParam(LATEST)):
        yield key, int(ts), latest.read()


def timer_reset_and_clear(p):
    out = (p
           | beam.Create([('a', 1), ('b', 3), ('a', 5), ('b', -1), ('c', 7)])
           | beam.Map(lambda kv: window.TimestampedValue(kv, abs(kv[1])))
           | beam.ParDo(Debounce()))
    assert_that(out, equal_to([('a', 15, 5), ('c', 17, 7)]))


class Dedup(beam.DoFn):
    SEEN = userstate.SetStateSpec('seen', StrUtf8Coder())

    def process(self, kv, seen=beam.DoFn.StateParam(SEEN)):
        if kv[1] not in seen.read():
            seen.add(kv[1])
            yield kv


def set_state_dedup(p):
    out = (p
           | beam.Create([('a', 'x'), ('a', 'y'), ('a', 'x'), ('b', 'x'), ('b', 'x')])
           | beam.ParDo(Dedup()))
    assert_that(out, equal_to([('a', 'x'), ('a', 'y'), ('b', 'x')]))


class IntSum(beam.CombineFn):
    def create_accumulator(self):
        return 0

    def add_input(self, acc, value):
        return acc + value

    def merge_accumulators(self, accs):
        return sum(accs)

    def extract_output(self, acc):
        return acc


class SumThenEmit(beam.DoFn):
    SUM = userstate.CombiningValueStateSpec('sum', VarIntCoder(), IntSum())
    DONE = userstate.TimerSpec('done', TimeDomain.WATERMARK)

    def process(self, kv, total=beam.DoFn.StateParam(SUM),
                done=beam.DoFn.TimerParam(DONE)):
        total.add(kv[1])
        done.set(100)

    @userstate.on_timer(DONE)
    def emit(self, key=beam.DoFn.KeyParam, total=beam.DoFn.StateParam(SUM)):
        yield key, total.read()


def combining_state(p):
    out = (p
           | beam.Create([('a', i) for i in range(1, 101)] + [('b', 5)])
           | beam.ParDo(SumThenEmit()))
    assert_that(out, equal_to([('a', 5050), ('b', 5)]))


class LargeBag(beam.DoFn):
    """Reads back a bag larger than a State API page (continuation tokens)."""
    BAG = userstate.BagStateSpec('bag', StrUtf8Coder())
    DONE = userstate.TimerSpec('done', TimeDomain.WATERMARK)

    def process(self, kv, bag=beam.DoFn.StateParam(BAG), done=beam.DoFn.TimerParam(DONE)):
        bag.add(kv[1])
        done.set(0)

    @userstate.on_timer(DONE)
    def emit(self, key=beam.DoFn.KeyParam, bag=beam.DoFn.StateParam(BAG)):
        values = list(bag.read())
        yield key, len(values), sum(len(v) for v in values)


def large_bag_state(p):
    out = (p
           | beam.Create([('k', '%05d' % i + 'x' * 1000) for i in range(3000)])
           | beam.ParDo(LargeBag()))
    assert_that(out, equal_to([('k', 3000, 3000 * 1005)]))


def test_running_count_value_state(job_server):
    run_both(running_count, job_server.endpoint)


def test_bag_state_and_event_time_timer(job_server):
    run_both(bag_state_and_event_time_timer, job_server.endpoint)


def test_timer_reset_and_clear(job_server):
    run_both(timer_reset_and_clear, job_server.endpoint)


def test_set_state_dedup(job_server):
    run_both(set_state_dedup, job_server.endpoint)


def test_combining_state(job_server):
    run_both(combining_state, job_server.endpoint)


def test_large_bag_state_pages(job_server):
    run_both(large_bag_state, job_server.endpoint)


class TaggedTimers(beam.DoFn):
    """One timer family, a timer per dynamic tag; a fired timer sees its tag."""
    TIMERS = userstate.TimerSpec('per_tag', TimeDomain.WATERMARK)

    def process(self, kv, timers=beam.DoFn.TimerParam(TIMERS)):
        timers.set(kv[1], dynamic_timer_tag='t%d' % kv[1])
        timers.set(kv[1] + 1000, dynamic_timer_tag='cleared')
        timers.clear(dynamic_timer_tag='cleared')

    @userstate.on_timer(TIMERS)
    def fire(self, key=beam.DoFn.KeyParam, ts=beam.DoFn.TimestampParam,
             tag=beam.DoFn.DynamicTimerTagParam):
        yield key, tag, int(ts)


def dynamic_timer_tags(p):
    out = (p
           | beam.Create([('a', 5), ('a', 9), ('b', 5)])
           | beam.ParDo(TaggedTimers()))
    assert_that(out, equal_to([('a', 't5', 5), ('a', 't9', 9), ('b', 't5', 5)]))


def test_dynamic_timer_tags(job_server):
    run_both(dynamic_timer_tags, job_server.endpoint)


def test_state_and_timers_in_a_process_environment(job_server):
    run_both(bag_state_and_event_time_timer, job_server.endpoint, 'PROCESS')


class PairUp(beam.DoFn):
    """Emits a key's values two at a time; a key's odd one out leaves when
    its window closes."""
    BUFFER = userstate.BagStateSpec('buffer', StrUtf8Coder())
    LEFTOVER = userstate.TimerSpec('leftover', TimeDomain.WATERMARK)

    def process(self, kv, w=beam.DoFn.WindowParam,
                buffer=beam.DoFn.StateParam(BUFFER),
                leftover=beam.DoFn.TimerParam(LEFTOVER)):
        values = sorted(list(buffer.read()) + [kv[1]])
        if len(values) == 2:
            buffer.clear()
            leftover.clear()
            yield kv[0], values
        else:
            buffer.add(kv[1])
            leftover.set(w.max_timestamp())

    @userstate.on_timer(LEFTOVER)
    def flush(self, key=beam.DoFn.KeyParam,
              buffer=beam.DoFn.StateParam(BUFFER)):
        yield key, list(buffer.read())


def stream_into_stateful_dofn(p):
    # The TestStream writes its events with Beam Python's FastPrimitivesCoder
    # while its output is a KV PCollection; the runner re-encodes the events
    # so the stateful DoFn sees a keyed input (str and tuple keys here).
    events = (TestStream()
              .advance_watermark_to(0)
              .add_elements([('a', 'x'), ('b', 'y')])
              .add_elements([('a', 'z'), (('c', 1), 'w')])
              .advance_watermark_to(100)
              .add_elements([('b', 'v')])
              .advance_watermark_to_infinity())
    out = p | events | beam.ParDo(PairUp())
    assert_that(out, equal_to([
        ('a', ['x', 'z']), ('b', ['v', 'y']), (('c', 1), ['w'])]))


def test_test_stream_into_a_stateful_dofn(job_server):
    run_both(stream_into_stateful_dofn, job_server.endpoint)


class EmitOnProcessingTime(beam.DoFn):
    """Each element re-arms a processing-time timer at 1 s (absolute); each
    firing records the count so far and the last element processed before
    it, then arms the next one a second later, three firings in all."""
    EMIT = userstate.TimerSpec('emit', TimeDomain.REAL_TIME)
    COUNT = userstate.ReadModifyWriteStateSpec('count', VarIntCoder())
    LAST = userstate.ReadModifyWriteStateSpec('last', VarIntCoder())

    def process(self, kv, emit=beam.DoFn.TimerParam(EMIT),
                last=beam.DoFn.StateParam(LAST)):
        emit.set(1)
        last.write(kv[1])
        yield kv[1]

    @userstate.on_timer(EMIT)
    def fire(self, emit=beam.DoFn.TimerParam(EMIT),
             count=beam.DoFn.StateParam(COUNT),
             last=beam.DoFn.StateParam(LAST)):
        n = count.read() or 0
        if n == 3:
            return
        count.write(n + 1)
        emit.set(n + 2)
        yield 'fired %d after element %d' % (n, last.read())


def processing_time_timer_at_the_clock(p):
    # Processing time is advanced exactly to the armed timer before each
    # next element: the timer fires then, before that element (as on Beam
    # Python's DirectRunner, userstate_test's realtime-timer sequence).
    events = (TestStream()
              .advance_watermark_to(0)
              .add_elements([('key', 0)])
              .advance_processing_time(1)
              .add_elements([('key', 1)])
              .advance_processing_time(1)
              .add_elements([('key', 2)])
              .advance_processing_time(1)
              .add_elements([('key', 3)]))
    out = p | events | beam.ParDo(EmitOnProcessingTime())
    assert_that(out, equal_to([
        0, 1, 2, 3,
        'fired 0 after element 0', 'fired 1 after element 1',
        'fired 2 after element 2']))


def test_processing_time_timer_fires_when_the_clock_reaches_it(job_server):
    run_both(processing_time_timer_at_the_clock, job_server.endpoint,
             extra=['--streaming'])
