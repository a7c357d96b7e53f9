"""``Pipeline``: builds the transform graph and runs it on Oxbeam's engine.

As in ``apache_beam.pipeline``: transforms are applied with ``|`` (and named
with ``"label" >> transform``), composites expand into primitives, and
``run()`` (or leaving a ``with Pipeline() as p:`` block) executes. Running
serializes the graph to a Beam ``Pipeline`` proto and hands it to
``oxbeam._oxbeam.run_pipeline``: the Rust local runner plans it, runs
GroupByKey / Flatten / Impulse itself and Python stages in this process.
"""

import base64
import gc
import hashlib
import json
import logging
import os
import shlex
import sys

from oxbeam import typehints
from oxbeam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from oxbeam.pvalue import PBegin, PCollection

__all__ = ["Pipeline", "AppliedPTransform"]

_LOG = logging.getLogger(__name__)
_ENV = "python"
# Submitted to a Beam job service (``--job_endpoint``).
_PORTABLE_RUNNERS = {"portablerunner", "oxbeamjobserver"}
_SUPPORTED_RUNNERS = {None, "", "direct", "directrunner", "oxbeam", "oxbeamrunner", "local",
                      "localrunner", "prismrunner", "fnapirunner", "bundlebasedirectrunner",
                      "switchingdirectrunner"}


def _urns():
    from oxbeam._oxbeam import URNS

    return URNS


class AppliedPTransform(object):
    """One application of a transform: its label, inputs, outputs and parts."""

    def __init__(self, pipeline, parent, transform, full_label, inputs):
        self.pipeline = pipeline
        self.parent = parent
        self.transform = transform
        self.full_label = full_label
        self.inputs = list(inputs)
        self.side_inputs = []
        self.outputs = {}
        self.parts = []
        # Set by primitives: (urn key in URNS, payload builder or None, runs in Python env).
        self.primitive = None

    def _add_output(self, tag="None", element_type=None, windowing=None):
        """A new output PCollection; ``windowing`` is a Windowing or WindowFn
        (default: the first input's)."""
        if windowing is None:
            windowing = self.inputs[0].windowing if self.inputs else None
        pc = PCollection(self.pipeline, self, tag, element_type, windowing)
        # As in Beam: unbounded if any input is.
        pc.is_bounded = all(i.is_bounded for i in self.inputs)
        self.outputs[tag] = pc
        return pc

    def __repr__(self):
        return "AppliedPTransform(%s)" % self.full_label


class PipelineVisitor(object):
    """Visits a pipeline's transforms (``Pipeline.visit``), as Beam's."""

    def visit_value(self, value, producer_node):
        pass

    def visit_transform(self, transform_node):
        pass

    def enter_composite_transform(self, transform_node):
        pass

    def leave_composite_transform(self, transform_node):
        pass


class Pipeline(object):
    """A graph of transforms, and the means to run it.

    ``Pipeline(runner=None, options=None, argv=None)``: ``runner`` may be a
    name (``"DirectRunner"`` and ``"OxbeamRunner"`` both run on Oxbeam's
    local runner); ``options`` a :class:`PipelineOptions`.
    """

    def __init__(self, runner=None, options=None, argv=None):
        if options is None:
            options = PipelineOptions(argv or [])
        elif not isinstance(options, PipelineOptions):
            raise ValueError("Parameter options, if specified, must be of type PipelineOptions.")
        self._options = options
        if runner is None:
            runner = options.view_as(StandardOptions).runner
        if runner is not None and not isinstance(runner, str):
            runner = type(runner).__name__
        self.runner = runner
        self._root = AppliedPTransform(self, None, None, "", [])
        self._stack = [self._root]
        self._labels = set()
        self._pcoll_counter = 0
        self._ran = False
        self._prestarted = None
        self._prestart_workers()

    def _prestart_workers(self):
        """``multi_processing`` on the local runner: the harness processes
        start now, forked from this process with its imports done (see
        ``oxbeam.runners.worker.fork_warm``), or, where forking is not safe,
        as new processes that import Oxbeam while the pipeline is built
        (about 0.1 s each, on the other cores), not when it runs."""
        if (self.runner or "").lower() not in _SUPPORTED_RUNNERS:
            return
        direct = self._options.view_as(DirectOptions)
        if str(direct.direct_running_mode or "").lower() != "multi_processing":
            return
        try:
            workers = _direct_workers(direct)
        except (TypeError, ValueError):
            return  # run() reports the bad value
        from oxbeam import _oxbeam
        from oxbeam.runners.worker import fork_warm

        self._prestarted = _worker_command()
        forked = fork_warm(self._prestarted, workers)
        if forked < workers:
            _oxbeam.prestart_workers(self._prestarted, workers)

    def __del__(self):
        prestarted = getattr(self, "_prestarted", None)
        if prestarted is not None:
            try:
                from oxbeam import _oxbeam

                _oxbeam.release_workers(prestarted)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

    @property
    def options(self):
        return self._options

    @property
    def applied_labels(self):
        """The full labels of the transforms applied so far."""
        return self._labels

    def _new_pcollection_id(self):
        self._pcoll_counter += 1
        return "pc%d" % self._pcoll_counter

    # -- building -----------------------------------------------------------

    def apply(self, transform, pvalueish=None, label=None):
        """Applies ``transform`` to ``pvalueish`` (a PCollection, PBegin,
        or a tuple/list/dict of PCollections) and returns its output."""
        from oxbeam.transforms.ptransform import PTransform, _NamedPTransform

        if isinstance(transform, _NamedPTransform):
            return self.apply(transform.transform, pvalueish, label or transform.label)
        if not isinstance(transform, PTransform):
            raise TypeError("Expected a PTransform object, got %r" % (transform,))
        if pvalueish is None or pvalueish is self:
            pvalueish = PBegin(self)
        parent = self._stack[-1]
        label = label or transform.label
        full = label if parent is self._root else parent.full_label + "/" + label
        if full in self._labels:
            raise RuntimeError(
                'A transform with label "%s" already exists in the pipeline. '
                "To apply a transform with a specified label, write "
                'pvalue | "label" >> transform' % full
            )
        self._labels.add(full)
        declared_output = None
        if isinstance(pvalueish, PCollection):
            from oxbeam.transforms.core import _type_options
            from oxbeam.typehints.decorators import (
                check_input, composite_hints, pcollection_input_of)

            if _type_options(self).pipeline_type_check:
                check_input(label, pcollection_input_of(transform), pvalueish)
                declared_output = composite_hints(transform, pvalueish)
        inputs = _pcollections_of(pvalueish)
        node = AppliedPTransform(self, parent, transform, full, inputs)
        parent.parts.append(node)
        self._stack.append(node)
        try:
            result = transform.expand(pvalueish)
        finally:
            self._stack.pop()
        if not node.outputs:
            for i, pc in enumerate(_pcollections_of(result)):
                node.outputs.setdefault(str(i), pc)
        if declared_output is not None and isinstance(result, PCollection):
            # A composite's declared output type (its TypeVars bound).
            result.element_type = declared_output
        return result

    def _current(self):
        return self._stack[-1]

    def visit(self, visitor):
        """Walks the transforms applied so far, depth first in application
        order: composites are entered and left, leaves visited, then each
        output value."""

        def walk(node):
            if node.parts:
                visitor.enter_composite_transform(node)
                for part in list(node.parts):
                    walk(part)
                visitor.leave_composite_transform(node)
            elif node.transform is not None:
                visitor.visit_transform(node)
            for pc in node.outputs.values():
                visitor.visit_value(pc, node)

        for part in list(self._root.parts):
            walk(part)

    def __or__(self, transform):
        return self.apply(transform, PBegin(self))

    # -- running ------------------------------------------------------------

    def run(self, test_runner_api="AUTO"):
        """Runs the pipeline to completion; returns a :class:`PipelineResult`.

        A user function's exception is re-raised (same type), with the
        transform label, the element and the original traceback in its
        message; ``transform``, ``element`` and ``traceback_text`` are set on it.

        Ctrl-C cancels the job and raises ``KeyboardInterrupt`` once it
        stopped (within ~0.1 s, also while user code runs; a blocking C call
        such as a long ``time.sleep`` in it ends first); no output of the
        job is written. A streaming pipeline (``--streaming`` or an unbounded
        source) is drained by the first Ctrl-C and cancelled by the second.
        """
        from oxbeam import _oxbeam
        from oxbeam.runners.runner import PipelineResult

        runner = (self.runner or "").lower()
        if runner in _PORTABLE_RUNNERS:
            return self._run_on_job_service()
        if runner not in _SUPPORTED_RUNNERS:
            raise NotImplementedError(
                "runner %r: Oxbeam's Python SDK runs pipelines on Oxbeam's local runner "
                "(--runner=DirectRunner or OxbeamRunner) or submits them to a Beam job "
                "service such as `oxbeam job-server` (--runner=PortableRunner "
                "--job_endpoint=HOST:PORT)" % self.runner
            )
        direct = self._options.view_as(DirectOptions)
        # As Beam's DirectRunner: one worker unless asked, 0 for all cores.
        # In process, more workers rarely pay: Python stages share one
        # interpreter lock (10-Map chain: 2.1M elements/s on one worker,
        # 1.9-2.1M on two); multi_processing gives each its own.
        workers = _direct_workers(direct)
        mode = str(direct.direct_running_mode or "in_memory").lower()
        if mode not in _RUNNING_MODES:
            raise ValueError(
                "--direct_running_mode=%s: expected one of %s" % (mode, ", ".join(_RUNNING_MODES))
            )
        opts = {"parallelism": workers,
                "dynamic_splitting": not direct.no_dynamic_splitting,
                "fusion": not direct.no_fusion}
        builder = _ProtoBuilder(self, blobs=True)
        proto_json = builder.build()
        if mode == "multi_processing":
            # Python stages in harness processes, one interpreter lock each.
            proto_json["components"]["environments"][_ENV] = _worker_environment()
            opts.update(harness_processes=workers, echo_harness_output=True)
        proto = builder.encode("org.apache.beam.model.pipeline.v1.Pipeline", proto_json)
        if self._options.view_as(StandardOptions).streaming:
            # The streaming engine; pipelines with a TestStream or an
            # unbounded PCollection run on it anyway.
            opts["streaming"] = True
        self._ran = True
        saved = gc.get_threshold()
        gc.set_threshold(max(saved[0], _GC_THRESHOLD), *saved[1:])
        try:
            counters, dists, gauges, string_sets = _oxbeam.run_pipeline(proto, opts)
        except _oxbeam.UserCodeError as e:
            _reraise_user_error(e)
            raise
        finally:
            gc.set_threshold(*saved)
            if self._prestarted is not None:
                # Those the run did not take (fewer stages than workers).
                _oxbeam.release_workers(self._prestarted)
                self._prestarted = None
        return PipelineResult(counters, dists, gauges, string_sets)

    def _run_on_job_service(self):
        """``--runner=PortableRunner --job_endpoint=HOST:PORT``: submits the
        pipeline to a Beam job service (``oxbeam job-server``) over Beam's
        Job API and waits for its end. With ``--environment_type=PROCESS``
        (the default) the Python stages run in worker processes the service
        starts on its machine (a ``beam:env:process:v1`` environment,
        ``python -m oxbeam.runners.worker`` with this interpreter),
        ``--sdk_worker_parallelism`` of them; with ``LOOPBACK``, in this
        process: it serves a Beam worker pool (a ``beam:env:external:v1``
        environment) whose workers are threads here, as Beam's Python SDK
        does."""
        from oxbeam import _oxbeam
        from oxbeam.options.pipeline_options import PortableOptions

        portable = self._options.view_as(PortableOptions)
        endpoint = portable.job_endpoint
        if not endpoint:
            raise ValueError("--runner=PortableRunner needs --job_endpoint=HOST:PORT "
                             "(e.g. of `oxbeam job-server`)")
        env = str(portable.environment_type or "PROCESS").upper()
        if env not in ("PROCESS", "LOOPBACK"):
            raise NotImplementedError(
                "--environment_type=%s: Oxbeam's Python SDK runs its Python stages in "
                "worker processes the job service starts on its machine (PROCESS) or in "
                "this process (LOOPBACK)" % portable.environment_type)
        pool = _oxbeam.WorkerPool() if env == "LOOPBACK" else None
        try:
            return self._submit(endpoint, portable, pool)
        finally:
            if pool is not None:
                pool.stop()

    def _submit(self, endpoint, portable, pool):
        from oxbeam import _oxbeam, _runtime
        from oxbeam.options.pipeline_options import GoogleCloudOptions
        from oxbeam.runners.runner import PipelineResult

        builder = _ProtoBuilder(self, blobs=True)
        proto_json = builder.build()
        envs = proto_json["components"]["environments"]
        worker_env = _worker_environment() if pool is None else _loopback_environment(pool.endpoint)
        envs[_ENV] = worker_env
        from oxbeam.wasm import ENVIRONMENT_ID as wasm_env

        if wasm_env in envs:
            # Wasm stages run in the same workers (they embed wasmtime).
            envs[wasm_env] = worker_env
        proto = builder.encode("org.apache.beam.model.pipeline.v1.Pipeline", proto_json)
        options = self._options.get_all_options(drop_default=True)
        options.pop("runner", None)
        options.setdefault("sdk_worker_parallelism", portable.sdk_worker_parallelism)
        job_name = self._options.view_as(GoogleCloudOptions).job_name or "oxbeam-python"
        self._ran = True
        # A LOOPBACK worker's user exceptions travel through the job
        # service as text: pickled in, as from a worker process.
        remote = _runtime.REMOTE
        _runtime.REMOTE = remote or pool is not None
        try:
            job_id, state, error, rows = _oxbeam.submit_job(
                str(endpoint), proto, json.dumps(options, default=str), str(job_name))
        finally:
            _runtime.REMOTE = remote
        if state != "DONE":
            _raise_job_failure(job_id, state, error)
        return PipelineResult(*rows)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        if exc_type is None:
            self.run().wait_until_finish()

    # -- the Beam proto -------------------------------------------------------

    def to_runner_api_json(self):
        """The pipeline as a proto3-JSON ``Pipeline`` message (a dict)."""
        return _ProtoBuilder(self).build()

    def to_runner_api_bytes(self):
        """The serialized Beam ``Pipeline`` proto."""
        builder = _ProtoBuilder(self, blobs=True)
        return builder.encode("org.apache.beam.model.pipeline.v1.Pipeline", builder.build())


def _pcollections_of(pvalueish):
    if isinstance(pvalueish, PCollection):
        return [pvalueish]
    if isinstance(pvalueish, dict):
        return [v for v in pvalueish.values() if isinstance(v, PCollection)]
    if isinstance(pvalueish, (list, tuple)):
        return [v for v in pvalueish if isinstance(v, PCollection)]
    from oxbeam.pvalue import DoOutputsTuple

    if isinstance(pvalueish, DoOutputsTuple):
        return list(pvalueish)
    return []


_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
# The interpreter's young-generation GC threshold while a pipeline runs
# (at least): batches make thousands of short-lived tuples, and the default
# (700) runs a collection every few hundred elements. Restored afterwards.
_GC_THRESHOLD = 10000


def _direct_workers(direct):
    """The workers ``--direct_num_workers`` asks for: 1 if unset, 0 for all
    cores; ``ValueError`` if negative."""
    workers = direct.direct_num_workers
    workers = 1 if workers is None else int(workers)
    if workers < 0:
        raise ValueError("--direct_num_workers=%d: expected 0 (all cores) or more" % workers)
    return workers or os.cpu_count() or 1


def _worker_command():
    """The command of ``multi_processing`` harness processes."""
    return "%s -m oxbeam.runners.worker" % shlex.quote(sys.executable)


def _worker_environment():
    """The ``beam:env:process:v1`` environment of ``multi_processing`` runs:
    ``python -m oxbeam.runners.worker`` with this interpreter and this
    process's module search path (so functions pickled by reference import)."""
    from oxbeam import _oxbeam

    path = [p or os.getcwd() for p in sys.path]
    payload = {
        "command": _worker_command(),
        "env": {"PYTHONPATH": os.pathsep.join(path)},
    }
    data = _oxbeam.encode_proto(
        "org.apache.beam.model.pipeline.v1.ProcessPayload", json.dumps(payload)
    )
    return {
        "urn": _urns()["standard_environments::environments::PROCESS"],
        "payload": _b64(data),
        # The worker (`serve_harness`) reads inputs embedded in requests;
        # the Python environment's URN tells the runner whose pane rules
        # apply to windowing strategies in this environment.
        "capabilities": ["beam:protocol:control_request_elements_embedding:v1",
                         _urns()["oxbeam_python::ENVIRONMENT"]],
    }


def _loopback_environment(endpoint):
    """The ``beam:env:external:v1`` environment of a LOOPBACK submission:
    the worker pool at ``endpoint`` in this process."""
    from oxbeam import _oxbeam

    data = _oxbeam.encode_proto(
        "org.apache.beam.model.pipeline.v1.ExternalPayload",
        json.dumps({"endpoint": {"url": endpoint}}),
    )
    env = _worker_environment()
    env["urn"] = _urns()["standard_environments::environments::EXTERNAL"]
    env["payload"] = _b64(data)
    return env


def _raise_job_failure(job_id, state, error):
    """A job that ended in ``state`` (not DONE): a user function's
    exception is re-raised with its type, transform and element, as in local
    runs; anything else is a ``RuntimeError``, as Beam's PortableRunner
    raises."""
    import re

    from oxbeam._runtime import split_remote_error

    tb, orig, element = split_remote_error(error or "")
    if orig is not None:
        m = re.search(r"transform '([^']*)'", error)
        _raise_as_user_error(orig, m.group(1) if m else None, element, tb)
    raise RuntimeError("Pipeline %s failed in state %s: %s" % (job_id, state, error or "(no message)"))


def _reraise_user_error(e):
    orig = getattr(e, "original", None)
    transform = getattr(e, "transform", None)
    element = getattr(e, "element", None)
    tb = getattr(e, "traceback_text", "") or ""
    if orig is None:
        # From a harness process: the exception came pickled in the text.
        from oxbeam._runtime import split_remote_error

        tb, orig, remote_element = split_remote_error(tb)
        if orig is None:
            return
        element = remote_element
    _raise_as_user_error(orig, transform, element, tb)


def _raise_as_user_error(orig, transform, element, tb):
    """Raises user code's exception ``orig`` again, its type kept, with the
    transform, the element and the original traceback in its message and
    attributes; returns if its type cannot be built from a message."""
    msg = "%s [while running '%s'%s]\n\nOriginal traceback:\n%s" % (
        orig,
        transform,
        "" if element is None else " on element %s" % element,
        tb,
    )
    try:
        new = type(orig)(msg)
    except Exception:  # noqa: BLE001 - exception types with other signatures
        return
    try:
        new.transform = transform
        new.element = element
        new.traceback_text = tb
        new.original = orig
    except Exception:  # noqa: BLE001
        pass
    raise new.with_traceback(orig.__traceback__) from None


def _b64(b):
    return base64.b64encode(b).decode("ascii")


# Bytes fields at least this long travel beside the JSON (``blobs``), not as
# base64 inside it: a large Create's pickled values cross once, as bytes.
_BLOB_MIN = 1024


class _ProtoBuilder(object):
    def __init__(self, pipeline, blobs=False):
        self.p = pipeline
        # With ``blobs``, long bytes fields are references into this list
        # (see ``bytes_field``); otherwise the JSON is self-contained.
        self.blobs = [] if blobs else None
        self.urns = _urns()
        self.coders = {}
        self._custom_ids = {}
        self.strategies = {}
        self.pcollections = {}
        self.transforms = {}
        self.requirements = set()
        # Environments besides Python's (e.g. Wasm), by id.
        self.environments = {}

    def urn(self, key):
        return self.urns[key]

    def bytes_field(self, data):
        """``data`` as the JSON value of a bytes field: base64, or for long
        data a reference to ``self.blobs`` that ``encode`` resolves."""
        if self.blobs is None or len(data) < _BLOB_MIN:
            return _b64(data)
        from oxbeam import _oxbeam

        self.blobs.append(data)
        return _b64(_oxbeam.BLOB_MARKER + str(len(self.blobs) - 1).encode())

    def encode(self, message, msg):
        """Proto ``message`` (full name) from proto3 JSON ``msg`` (a dict),
        with this builder's blobs."""
        from oxbeam import _oxbeam

        return _oxbeam.encode_proto(message, json.dumps(msg), self.blobs)

    # Coders.
    def coder(self, t):
        U = "standard_coders::"
        simple = {int: "VARINT", str: "STRING_UTF8", bytes: "BYTES", float: "DOUBLE", bool: "BOOL"}
        if t in simple:
            cid = simple[t].lower()
            self.coders[cid] = {"spec": {"urn": self.urn(U + simple[t])}}
            return cid
        if typehints.is_kv(t):
            k, v = self.coder(t.key), self.coder(t.value)
            cid = "kv(%s,%s)" % (k, v)
            self.coders[cid] = {"spec": {"urn": self.urn(U + "KV")}, "componentCoderIds": [k, v]}
            return cid
        if isinstance(t, typehints._Iter):
            e = self.coder(t.element)
            cid = "iterable(%s)" % e
            self.coders[cid] = {"spec": {"urn": self.urn(U + "ITERABLE")}, "componentCoderIds": [e]}
            return cid
        custom = None
        if isinstance(t, typehints._Coded):
            custom = t.coder
        elif isinstance(t, type):
            from oxbeam.coders import registry

            custom = registry._registered(t)
        if custom is not None:
            return self.custom_coder(custom)
        self.coders["python_any"] = {"spec": {"urn": self.urn("oxbeam_python::ANY_CODER")}}
        self.coders["length_prefix(python_any)"] = {
            "spec": {"urn": self.urn(U + "LENGTH_PREFIX")},
            "componentCoderIds": ["python_any"],
        }
        return "length_prefix(python_any)"

    def custom_coder(self, coder):
        """A user's coder object: ``length_prefix(python_custom)``, one id
        per distinct pickle."""
        from oxbeam.transforms.core import _pickle

        payload = _b64(_pickle(coder))
        cid = self._custom_ids.get(payload)
        if cid is None:
            cid = "custom%d(%s)" % (len(self._custom_ids), type(coder).__name__)
            self._custom_ids[payload] = cid
            self.coders[cid] = {"spec": {"urn": self.urn("oxbeam_python::CUSTOM_CODER"),
                                         "payload": payload}}
            self.coders["length_prefix(%s)" % cid] = {
                "spec": {"urn": self.urn("standard_coders::LENGTH_PREFIX")},
                "componentCoderIds": [cid],
            }
        return "length_prefix(%s)" % cid

    def window_coder(self, wf):
        from oxbeam.window import GlobalWindows

        key = "GLOBAL_WINDOW" if isinstance(wf, GlobalWindows) else "INTERVAL_WINDOW"
        cid = key.lower()
        self.coders[cid] = {"spec": {"urn": self.urn("standard_coders::" + key)}}
        return cid

    def window_fn_spec(self, wf):

        key, message, payload = wf._proto()
        spec = {"urn": self.urn(key)}
        if message is not None:
            spec["payload"] = self.bytes_field(self.encode(message, payload))
        return spec

    def strategy(self, windowing):
        from oxbeam.transforms.trigger import AccumulationMode
        from oxbeam.window import _as_windowing

        windowing = _as_windowing(windowing)
        wf = windowing.windowfn
        spec = self.window_fn_spec(wf)
        msg = {
            "windowFn": spec,
            "mergeStatus": "NEEDS_MERGE" if wf.merging else "NON_MERGING",
            "windowCoderId": self.window_coder(wf),
            "trigger": windowing.triggerfn.to_runner_api(),
            "accumulationMode": AccumulationMode._proto_name(windowing.accumulation_mode),
            "outputTime": windowing.timestamp_combiner,
            # As Beam Python writes them; the runner applies Beam Python's
            # pane rules to strategies of this environment, which ignore both.
            "closingBehavior": "EMIT_ALWAYS",
            "onTimeBehavior": "FIRE_ALWAYS",
            "allowedLateness": str(windowing.allowed_lateness.micros // 1000),
            "environmentId": _ENV,
        }
        plain = (msg["trigger"] == {"default": {}} and msg["accumulationMode"] == "DISCARDING"
                 and msg["outputTime"] == "END_OF_WINDOW" and msg["allowedLateness"] == "0")
        # A strategy beyond the window fn's defaults gets an id of its own.
        sid = "ws(%s)" % json.dumps(spec, sort_keys=True)
        if not plain:
            digest = hashlib.sha1(json.dumps(msg, sort_keys=True).encode()).hexdigest()[:12]
            sid = "ws(%s)" % digest
        if sid not in self.strategies:
            self.strategies[sid] = msg
        return sid

    def pcollection(self, pc):
        if pc.id not in self.pcollections:
            self.pcollections[pc.id] = {
                "uniqueName": "%s.%s" % (pc.producer.full_label if pc.producer else "", pc.tag),
                "coderId": self.coder(pc.element_type),
                "isBounded": "BOUNDED" if pc.is_bounded else "UNBOUNDED",
                "windowingStrategyId": self.strategy(pc.windowing),
            }
        return pc.id

    def transform(self, node):
        t = {"uniqueName": node.full_label}
        inputs = {}
        for i, pc in enumerate(node.inputs):
            inputs[str(i)] = self.pcollection(pc)
        for i, pc in enumerate(node.side_inputs):
            inputs["side%d" % i] = self.pcollection(pc)
        outputs = {tag: self.pcollection(pc) for tag, pc in node.outputs.items()}
        if inputs:
            t["inputs"] = inputs
        if outputs:
            t["outputs"] = outputs
        if node.primitive is not None:
            urn_key, payload_fn, in_env = node.primitive
            spec = {"urn": self.urn(urn_key)}
            if payload_fn is not None:
                spec["payload"] = self.bytes_field(payload_fn(self))
            t["spec"] = spec
            if in_env:
                # True: the Python environment; a string: that environment
                # (registered in ``environments`` by the payload builder).
                t["environmentId"] = _ENV if in_env is True else in_env
        if node.parts:
            t["subtransforms"] = [self.transform(c) for c in node.parts]
        self.transforms[node.full_label] = t
        return node.full_label

    def build(self):
        roots = [self.transform(c) for c in self.p._root.parts]
        out = {
            "components": {
                "transforms": self.transforms,
                "pcollections": self.pcollections,
                "windowingStrategies": self.strategies,
                "coders": self.coders,
                "environments": dict(
                    {_ENV: {"urn": self.urn("oxbeam_python::ENVIRONMENT")}}, **self.environments
                ),
            },
            "rootTransformIds": roots,
        }
        if self.requirements:
            out["requirements"] = sorted(self.requirements)
        return out
