"""``PipelineOptions`` and its views, as in
``apache_beam.options.pipeline_options``.

Flags are parsed from ``--name=value`` / ``--name value`` / ``--flag``;
all views of one ``PipelineOptions`` share the same values.
"""

__all__ = [
    "PipelineOptions",
    "StandardOptions",
    "DirectOptions",
    "SetupOptions",
    "DebugOptions",
    "TypeOptions",
    "GoogleCloudOptions",
    "WorkerOptions",
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


class PipelineOptions(object):
    """Options of a pipeline: ``PipelineOptions(flags=None, **kwargs)``."""

    _defaults = {}
    _types = {}

    def __init__(self, flags=None, **kwargs):
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
        for k, v in self._all.items():
            out[k] = self._convert(k, v)
        return out

    def display_data(self):
        return self.get_all_options(drop_default=True)

    def _convert(self, name, v):
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
    _defaults = {"direct_num_workers": 0, "direct_running_mode": "in_memory",
                 "direct_runner_use_stacked_bundle": True}
    _types = {"direct_num_workers": int}


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


_ALL_VIEWS = [StandardOptions, DirectOptions, SetupOptions, DebugOptions, TypeOptions,
              GoogleCloudOptions, WorkerOptions]
