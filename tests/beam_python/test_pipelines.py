"""Every pipeline of pipelines.ALL on Beam's DirectRunner and on Oxbeam
(LOOPBACK), with exact output; a sample also on EXTERNAL and PROCESS
environments."""

import pytest

import pipelines
from helpers import run_both

SAMPLE = ['map', 'group_by_key', 'combine_per_key', 'co_group_by_key', 'side_dict',
          'session_windows', 'read_text_wordcount', 'splittable_dofn', 'opaque_keys']


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
