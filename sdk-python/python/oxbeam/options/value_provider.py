"""Value providers of templated options, as
``apache_beam.options.value_provider``. Oxbeam runs a pipeline where it is
built, so every value is known when the pipeline runs."""

__all__ = ["ValueProvider", "StaticValueProvider", "RuntimeValueProvider",
           "NestedValueProvider", "check_accessible"]


class ValueProvider(object):
    """A value that may only be known at run time."""

    def is_accessible(self):
        raise NotImplementedError

    def get(self):
        raise NotImplementedError


class StaticValueProvider(ValueProvider):
    """A value known when the pipeline is built."""

    def __init__(self, value_type, value):
        self.value_type = value_type
        self.value = value_type(value) if value is not None and value_type not in (None, object) \
            and not isinstance(value, value_type) else value

    def is_accessible(self):
        return True

    def get(self):
        return self.value

    def __str__(self):
        return str(self.value)

    def __eq__(self, other):
        if isinstance(other, StaticValueProvider):
            return self.value_type == other.value_type and self.value == other.value
        return self.value == other

    def __hash__(self):
        return hash((type(self), self.value_type, self.value))


class RuntimeValueProvider(ValueProvider):
    """An option not given on the command line: its default."""

    runtime_options = None

    def __init__(self, option_name, value_type, default_value):
        self.option_name = option_name
        self.value_type = value_type
        self.default_value = default_value

    def is_accessible(self):
        return True

    @classmethod
    def get_value(cls, option_name, value_type, default_value):
        opts = cls.runtime_options
        if opts and option_name in opts:
            return value_type(opts[option_name])
        return default_value

    def get(self):
        opts = RuntimeValueProvider.runtime_options
        if opts and self.option_name in opts:
            return self.value_type(opts[self.option_name])
        return self.default_value

    def __str__(self):
        return "RuntimeValueProvider(option: %s, type: %s, default_value: %r)" % (
            self.option_name, getattr(self.value_type, "__name__", self.value_type),
            self.default_value)


class NestedValueProvider(ValueProvider):
    """``translator(value.get())``."""

    def __init__(self, value, translator):
        self.value = value
        self.translator = translator

    def is_accessible(self):
        return self.value.is_accessible()

    def get(self):
        return self.translator(self.value.get())


def check_accessible(value_provider_list):
    """A decorator for methods that read value providers (all accessible here)."""

    def _check_accessible(fnc):
        return fnc

    return _check_accessible
