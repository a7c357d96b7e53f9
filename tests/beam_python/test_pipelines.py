"""Every pipeline of pipelines.ALL on Beam's DirectRunner and on Oxbeam
(LOOPBACK), with exact output; a sample also on EXTERNAL and PROCESS
environments."""

import pytest

import pipelines
from helpers import run_both

SAMPLE = ['map', 'group_by_key', 'combine_per_key', 'co_group_by_key', 'side_dict',
          'session_windows', 'read_text_wordcount', 'splittable_dofn',
          'splittable_dofn_with_side_input', 'opaque_keys']


@pytest.mark.parametrize('name', sorted(pipelines.ALL))
def test_loopback(job_server, name):
    run_both(pipelines.ALL[name], job_server.endpoint)


def test_reshuffle_of_an_older_compatibility_version(job_server):
    # The job's options reach the planner: Beam 2.64's Reshuffle expansion
    # runs (panes lost) instead of the runner's identity (panes kept). As in
    # Beam's util_test, dill (which such old versions pickle with) is
    # patched out.
    from unittest import mock

    with mock.patch('apache_beam.coders.coders._should_force_use_dill', return_value=True):
        run_both(pipelines.reshuffle_before_2_65, job_server.endpoint,
                 extra=['--update_compatibility_version=2.64.0'])


@pytest.mark.parametrize('name', SAMPLE)
def test_external_worker_pool(job_server, worker_pool, name):
    run_both(pipelines.ALL[name], job_server.endpoint, 'EXTERNAL', worker_pool)


@pytest.mark.parametrize('name', SAMPLE)
def test_process_environment(job_server, name):
    run_both(pipelines.ALL[name], job_server.endpoint, 'PROCESS')


# Beam Python's own environment kinds (its portable-runner suite's
# defaults) run as harness processes the job server starts.
@pytest.mark.parametrize('environment', ['beam:env:harness_subprocess_python:v1',
                                         'beam:env:embedded_python:v1'])
@pytest.mark.parametrize('name', ['map', 'side_dict', 'co_group_by_key'])
def test_beam_python_environments(job_server, environment, name):
    run_both(pipelines.ALL[name], job_server.endpoint, environment)


def _warm_harnesses():
    """Processes of the job server's warm pool (oxbeam_fn_api::warm): Beam
    imported, waiting for a job."""
    import os
    found = 0
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if b'import apache_beam.runners.worker.sdk_worker_main as harness' in f.read():
                    found += 1
        except OSError:
            pass
    return found


def test_process_harnesses_start_warm(job_server):
    """The job server keeps Beam Python harnesses started ahead (one per core
    by default, `--prestart_harnesses`). A PROCESS job running that command
    gets one that imported Beam before the job, and it sees the job's
    environment variables, worker id and PYTHONPATH as a cold one would."""
    import time

    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from conftest import HERE
    from helpers import portable_options, run_on

    deadline = time.time() + 30
    while _warm_harnesses() == 0 and time.time() < deadline:
        time.sleep(0.1)
    assert _warm_harnesses() > 0, 'no warm harness after 30 s'

    def facts(_):
        import os
        import sys as harness_sys
        main = harness_sys.modules['__main__']
        yield (
            # A cold `python -m ...sdk_worker_main` runs the harness as __main__.
            getattr(main, '__file__', '').endswith('sdk_worker_main.py'),
            bool(os.environ.get('WORKER_ID')),
            'PIPELINE_OPTIONS' in os.environ,
            HERE in harness_sys.path,
        )

    def build(p):
        assert_that(p | beam.Create([1]) | beam.FlatMap(facts),
                    equal_to([(False, True, True, True)]))

    run_on(build, portable_options(job_server.endpoint, 'PROCESS',
                                   extra=['--sdk_worker_parallelism=1']))


def test_a_large_group_reaches_the_harness_through_the_state_api(job_server):
    """A group whose values take over 1 MiB goes to Beam's harness as a
    state-backed iterable (`beam:coder:state_backed_iterable:v1`): the
    harness pages through its values over the State API instead of holding
    them all at once. A small group still comes inline. Both give the same
    values, also read twice, as on Beam's DirectRunner (where both are
    lists)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from helpers import portable_options, run_on

    def summary(kv):
        key, values = kv
        first = sum(len(v) for v in values)
        second = sorted(int(v[:6]) for v in values)
        return (key, first, second == list(range(len(second))), type(values).__name__)

    def build(lazy):
        def pipeline(p):
            rows = (p
                    | beam.Create(range(12000))
                    | beam.Map(lambda i: ('big' if i < 10000 else 'small',
                                          '%06d' % (i if i < 10000 else i - 10000)
                                          + 'x' * 122))
                    | beam.GroupByKey()
                    | beam.Map(summary))
            assert_that(rows, equal_to([
                ('big', 10000 * 128, True, lazy['big']),
                ('small', 2000 * 128, True, lazy['small'])]))
        return pipeline

    run_on(build({'big': 'list', 'small': 'list'}),
           PipelineOptions(['--runner=DirectRunner']))
    run_on(build({'big': '_ConcatSequence', 'small': 'list'}),
           portable_options(job_server.endpoint))
