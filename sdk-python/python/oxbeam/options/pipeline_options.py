"""``PipelineOptions`` and its views, as in
``apache_beam.options.pipeline_options``.

Flags are parsed from ``--name=value`` / ``--name value`` / ``--flag``;
all views of one ``PipelineOptions`` share the same values.
"""

# Declared value-provider arguments read as these (as Beam's module
# re-exports them).
from oxbeam.options.value_provider import (  # noqa: E402,F401
    RuntimeValueProvider,
    StaticValueProvider,
    ValueProvider,
)

__all__ = [
    "PipelineOptions",
    "StandardOptions",
    "DirectOptions",
    "SetupOptions",
    "DebugOptions",
    "TypeOptions",
    "GoogleCloudOptions",
    "WorkerOptions",
    "PortableOptions",
    "StreamingOptions",
    "TestOptions",
    "ProfilingOptions",
    "JobServerOptions",
    "PrismRunnerOptions",
    "FlinkRunnerOptions",
    "SparkRunnerOptions",
]


def _parse(flags):
    values = {}
    i = 0
    flags = list(flags or [])
    while i < len(flags):
        f = flags[i]
        i += 1
        if not f.startswith("--"):
            continue
        name = f[2:]
        if "=" in name:
            name, value = name.split("=", 1)
        elif i < len(flags) and not flags[i].startswith("--"):
            value = flags[i]
            i += 1
        else:
            value = True
        name = name.replace("-", "_")
        if name in values and name in ("experiments", "experiment"):
            values[name] = values[name] + [value]
        elif name in ("experiments", "experiment"):
            values[name] = [value]
        else:
            values[name] = value
    return values


class _OptionsParser(object):
    """Records the arguments a ``_add_argparse_args(parser)`` classmethod
    declares (``add_argument`` / ``add_value_provider_argument``, as on
    Beam's parser): their names, defaults, types and actions."""

    def __init__(self):
        self.specs = {}

    def add_argument(self, *names, **kwargs):
        self._add(names, kwargs, False)

    def add_value_provider_argument(self, *names, **kwargs):
        self._add(names, kwargs, True)

    def _add(self, names, kwargs, value_provider):
        flags = [n for n in names if n.startswith("--")] or list(names)
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        action = kwargs.get("action")
        default = kwargs.get("default")
        if action == "store_true" and default is None:
            default = False
        elif action == "store_false" and default is None:
            default = True
        elif action == "store_const" and default is None:
            default = None
        self.specs[dest] = {
            "default": default,
            "type": kwargs.get("type"),
            "action": action,
            "const": kwargs.get("const"),
            "value_provider": value_provider,
        }

    def add_argument_group(self, *args, **kwargs):
        return self

    def add_mutually_exclusive_group(self, *args, **kwargs):
        return self


_SPECS = {}


def _declared_specs():
    """The arguments declared by every ``PipelineOptions`` subclass's
    ``_add_argparse_args`` (as Beam parses flags for all of them)."""
    specs = {}
    todo = [PipelineOptions]
    seen = set()
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        todo.extend(c.__subclasses__())
        if "_add_argparse_args" in c.__dict__:
            got = _SPECS.get(c)
            if got is None:
                parser = _OptionsParser()
                try:
                    c._add_argparse_args(parser)
                except Exception:  # noqa: BLE001 - a class that needs Beam's real parser
                    pass
                got = _SPECS[c] = parser.specs
            specs.update(got)
    return specs


def _declared_value(spec, raw, present):
    """A declared option's value: converted, or its default."""
    action = spec["action"]
    if not present:
        value = spec["default"]
    elif action == "store_true":
        value = raw if not isinstance(raw, str) else raw.lower() not in ("false", "0", "no")
    elif action == "store_false":
        value = False if raw is True else raw
    elif action == "store_const":
        value = spec["const"]
    elif action == "append":
        value = raw if isinstance(raw, list) else [raw]
        if spec["type"] is not None:
            value = [spec["type"](v) for v in value]
    elif spec["type"] is not None and isinstance(raw, str):
        value = spec["type"](raw)
    else:
        value = raw
    if spec["value_provider"]:
        from oxbeam.options.value_provider import RuntimeValueProvider, StaticValueProvider

        if present:
            return StaticValueProvider(spec["type"] or str, value)
        return RuntimeValueProvider(None, spec["type"] or str, value)
    return value


class PipelineOptions(object):
    """Options of a pipeline: ``PipelineOptions(flags=None, **kwargs)``.

    Subclasses declare options as in Beam, with a ``_add_argparse_args(cls,
    parser)`` classmethod (``parser.add_argument(...)``,
    ``parser.add_value_provider_argument(...)``); any view reads them.
    """

    _defaults = {}
    _types = {}

    def __init__(self, flags=None, **kwargs):
        if flags is None:
            # As Beam: without flags, the program's command line.
            import sys

            flags = sys.argv[1:]
        object.__setattr__(self, "_flags", list(flags or []))
        values = _parse(flags)
        values.update(kwargs)
        object.__setattr__(self, "_all", values)

    @classmethod
    def from_dictionary(cls, options):
        flags = []
        for k, v in options.items():
            if isinstance(v, bool):
                if v:
                    flags.append("--%s" % k)
            else:
                flags.append("--%s=%s" % (k, v))
        return cls(flags)

    def view_as(self, cls):
        view = cls.__new__(cls)
        object.__setattr__(view, "_flags", self._flags)
        object.__setattr__(view, "_all", self._all)
        return view

    def get_all_options(self, drop_default=False, **kwargs):
        out = {}
        for c in _ALL_VIEWS:
            for k, v in c._defaults.items():
                if not drop_default:
                    out[k] = v
        for k, spec in _declared_specs().items():
            if k not in self._all and not drop_default:
                out[k] = _declared_value(spec, None, False)
        for k, v in self._all.items():
            out[k] = self._convert(k, v)
        return out

    def display_data(self):
        return self.get_all_options(drop_default=True)

    def _convert(self, name, v):
        spec = _declared_specs().get(name)
        if spec is not None:
            return _declared_value(spec, v, True)
        for c in _ALL_VIEWS:
            t = c._types.get(name)
            if t is not None and isinstance(v, str):
                if t is bool:
                    return v.lower() not in ("false", "0", "no")
                return t(v)
        return v

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._all:
            return self._convert(name, self._all[name])
        for c in _ALL_VIEWS:
            if name in c._defaults:
                return c._defaults[name]
        spec = _declared_specs().get(name)
        if spec is not None:
            return _declared_value(spec, None, False)
        raise AttributeError("'%s' object has no attribute '%s'" % (type(self).__name__, name))

    def __setattr__(self, name, value):
        self._all[name] = value

    def __str__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%s" % kv for kv in sorted(self.get_all_options(drop_default=True).items())))


class StandardOptions(PipelineOptions):
    _defaults = {"runner": None, "streaming": False}
    _types = {"streaming": bool}


class DirectOptions(PipelineOptions):
    # Oxbeam's: ``--no_dynamic_splitting`` never splits a running bundle to
    # rebalance work; ``--no_fusion`` runs every transform as its own stage
    # (to check fusion does not change results).
    _defaults = {"direct_num_workers": 1, "direct_running_mode": "in_memory",
                 "direct_runner_use_stacked_bundle": True, "no_dynamic_splitting": False,
                 "no_fusion": False}
    _types = {"direct_num_workers": int, "no_dynamic_splitting": bool, "no_fusion": bool}


class SetupOptions(PipelineOptions):
    _defaults = {"save_main_session": False, "pickle_library": "default", "requirements_file": None,
                 "setup_file": None}
    _types = {"save_main_session": bool}


class DebugOptions(PipelineOptions):
    _defaults = {"experiments": None}

    def add_experiment(self, experiment):
        ex = list(self._all.get("experiments") or [])
        if experiment not in ex:
            ex.append(experiment)
        self._all["experiments"] = ex

    def lookup_experiment(self, key, default=None):
        for e in self._all.get("experiments") or []:
            if e == key:
                return True
            if e.startswith(key + "="):
                return e.split("=", 1)[1]
        return default


class TypeOptions(PipelineOptions):
    _defaults = {"pipeline_type_check": True, "runtime_type_check": False}


class GoogleCloudOptions(PipelineOptions):
    _defaults = {"project": None, "job_name": None, "temp_location": None, "region": None}


class WorkerOptions(PipelineOptions):
    _defaults = {"num_workers": None}
    _types = {"num_workers": int}


class PortableOptions(PipelineOptions):
    """``--runner=PortableRunner --job_endpoint=HOST:PORT`` submits the
    pipeline to a Beam job service (``oxbeam job-server``)."""

    _defaults = {"job_endpoint": None, "artifact_endpoint": None, "job_server_timeout": 300,
                 "environment_type": None, "environment_config": None,
                 "environment_options": None, "sdk_worker_parallelism": 1,
                 "environment_cache_millis": 0, "output_executable_path": None}
    _types = {"job_server_timeout": int, "sdk_worker_parallelism": int,
              "environment_cache_millis": int}


class StreamingOptions(PipelineOptions):
    _defaults = {"update_compatibility_version": None}


class TestOptions(PipelineOptions):
    _defaults = {"on_success_matcher": None, "dry_run": False, "wait_until_finish_duration": None}
    _types = {"dry_run": bool, "wait_until_finish_duration": int}


class ProfilingOptions(PipelineOptions):
    _defaults = {"profile_cpu": False, "profile_memory": False, "profile_location": None,
                 "profile_sample_rate": 1.0}
    _types = {"profile_cpu": bool, "profile_memory": bool, "profile_sample_rate": float}


class JobServerOptions(PipelineOptions):
    _defaults = {"artifacts_dir": None, "job_port": 0, "artifact_port": 0, "expansion_port": 0}
    _types = {"job_port": int, "artifact_port": int, "expansion_port": int}


class PrismRunnerOptions(PipelineOptions):
    _defaults = {"prism_location": None, "prism_beam_version_override": None,
                 "prism_log_level": "info", "prism_log_kind": "console"}


class FlinkRunnerOptions(PipelineOptions):
    _defaults = {"flink_master": "[auto]", "flink_version": None, "flink_job_server_jar": None,
                 "flink_submit_uber_jar": False, "parallelism": -1, "max_parallelism": -1}
    _types = {"flink_submit_uber_jar": bool, "parallelism": int, "max_parallelism": int}


class SparkRunnerOptions(PipelineOptions):
    _defaults = {"spark_master_url": "local[4]", "spark_job_server_jar": None,
                 "spark_submit_uber_jar": False, "spark_rest_url": None, "spark_version": "3"}
    _types = {"spark_submit_uber_jar": bool}


_ALL_VIEWS = [StandardOptions, DirectOptions, SetupOptions, DebugOptions, TypeOptions,
              GoogleCloudOptions, WorkerOptions, PortableOptions, StreamingOptions, TestOptions,
              ProfilingOptions, JobServerOptions, PrismRunnerOptions, FlinkRunnerOptions,
              SparkRunnerOptions]
