"""run_both: the same pipeline on Beam's DirectRunner and on Oxbeam."""

import json
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


def portable_options(endpoint, environment='LOOPBACK', pool=None, extra=()):
    args = ['--runner=PortableRunner', '--job_endpoint=%s' % endpoint,
            '--environment_type=%s' % environment]
    if environment == 'EXTERNAL':
        args.append('--environment_config=%s' % pool)
    elif environment == 'beam:env:harness_subprocess_python:v1':
        args.append('--environment_config=%s -m apache_beam.runners.worker.sdk_worker_main'
                    % sys.executable)
    elif environment == 'PROCESS':
        from conftest import HERE
        args.append('--environment_config=%s' % json.dumps({
            'command': '%s -m apache_beam.runners.worker.sdk_worker_main' % sys.executable,
            'env': {'PYTHONPATH': HERE},
        }))
    return PipelineOptions(args + list(extra))


def run_on(build_fn, options):
    """Builds the pipeline with `build_fn(p)` and runs it to completion;
    returns the PipelineResult. `build_fn` asserts on its output with
    assert_that, so a wrong result fails the run."""
    p = beam.Pipeline(options=options)
    build_fn(p)
    result = p.run()
    result.wait_until_finish()
    return result


def run_both(build_fn, endpoint, environment='LOOPBACK', pool=None, extra=()):
    """Runs on Beam's DirectRunner, then on Oxbeam; both must pass the
    pipeline's own assertions. Returns (direct result, oxbeam result)."""
    direct = run_on(build_fn, PipelineOptions(['--runner=DirectRunner'] + list(extra)))
    oxbeam = run_on(build_fn, portable_options(endpoint, environment, pool, extra))
    return direct, oxbeam
