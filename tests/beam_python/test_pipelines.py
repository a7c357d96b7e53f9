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


@pytest.mark.parametrize('name', SAMPLE)
def test_external_worker_pool(job_server, worker_pool, name):
    run_both(pipelines.ALL[name], job_server.endpoint, 'EXTERNAL', worker_pool)


@pytest.mark.parametrize('name', SAMPLE)
def test_process_environment(job_server, name):
    run_both(pipelines.ALL[name], job_server.endpoint, 'PROCESS')
