"""Splittable DoFns that checkpoint themselves (Beam Python's
PeriodicImpulse, ReadAllFromTextContinuously) on Oxbeam, in streaming: the
runner resumes each deferred residual after its requested delay as a new
bundle, so output flows downstream while the SDF is still running (not
once it has finished), and its watermark estimate holds the stage's
output watermark meanwhile.
"""

import os
import time

import apache_beam as beam
from apache_beam.io.textio import ReadAllFromTextContinuously
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms import userstate
from apache_beam.utils.timestamp import Timestamp


def _options(job_server, streaming=True):
    args = ['--runner=PortableRunner', '--job_endpoint=' + job_server.endpoint,
            '--environment_type=LOOPBACK']
    if streaming:
        args.append('--streaming')
    return PipelineOptions(args)


def _on_time(ts):
    # Each impulse is due at its timestamp; it must reach this stage soon
    # after, not when the whole PeriodicImpulse has finished.
    return time.time() < float(ts) + 1.5


def test_periodic_impulse_output_flows_while_it_runs(job_server):
    start = time.time() + 0.5
    with beam.Pipeline(options=_options(job_server)) as p:
        ticks = p | PeriodicImpulse(
            start_timestamp=Timestamp.of(start), stop_timestamp=Timestamp.of(start + 3),
            fire_interval=0.5)
        # Reshuffle: the check runs in another stage, after the runner.
        on_time = ticks | beam.Reshuffle() | beam.Map(_on_time)
        assert_that(on_time, equal_to([True] * 6))


class _WriteSecondFile(beam.DoFn):
    """Writes file2 into the watched directory once file1 has been read:
    the read must have emitted file1 while still watching."""

    WROTE = userstate.ReadModifyWriteStateSpec('wrote', beam.coders.BooleanCoder())

    def __init__(self, directory):
        self._directory = directory

    def process(self, element, wrote=beam.DoFn.StateParam(WROTE)):
        _, (name, line) = element
        if not wrote.read():
            with open(os.path.join(self._directory, 'file2'), 'w') as f:
                f.write('second')
            wrote.write(True)
        yield os.path.basename(name), line


def test_read_continuously_sees_a_file_written_downstream(job_server, tmp_path):
    (tmp_path / 'file1').write_text('first')
    now = Timestamp.now()
    with beam.Pipeline(options=_options(job_server)) as p:
        lines = (p
                 | ReadAllFromTextContinuously(
                     str(tmp_path / '*'), with_filename=True, start_timestamp=now,
                     stop_timestamp=now + 3, interval=0.5)
                 | beam.Map(lambda x: (0, x))
                 | beam.ParDo(_WriteSecondFile(str(tmp_path))))
        assert_that(lines, equal_to([('file1', 'first'), ('file2', 'second')]))
