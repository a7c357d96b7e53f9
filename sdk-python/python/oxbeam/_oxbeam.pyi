"""The Rust extension module of Oxbeam's Python SDK (crate ``oxbeam-python``)."""

from typing import Dict, List, Optional, Tuple

#: Input elements per Python call of a stage.
BATCH_SIZE: int
#: Every URN of Oxbeam's protos, keyed by its Rust constant path
#: (e.g. ``"standard_p_transforms::primitives::PAR_DO"``).
URNS: Dict[str, str]

class OxbeamError(Exception):
    """Base class of Oxbeam's errors."""

class PipelineError(OxbeamError):
    """The pipeline is invalid (the planner's message names the transform)."""

class ExecutionError(OxbeamError):
    """Running the pipeline failed outside user code."""

class UserCodeError(ExecutionError):
    """A user function raised. Attributes: ``transform`` (label),
    ``element`` (truncated repr or None), ``traceback_text``, ``original``
    (the exception the function raised)."""

    transform: str
    element: Optional[str]
    traceback_text: str
    original: BaseException

class InternalError(OxbeamError):
    """A bug in Oxbeam."""

class SinkBuffer:
    """Encodes a stage's output elements for one data sink (used by
    ``oxbeam._runtime``)."""

    def emit_batch(self, values: list, metas: list) -> None:
        """Encodes ``values[i]`` with ``metas[i] = (timestamp_micros, window)``."""

def encode_proto(message: str, json: str) -> bytes:
    """Encodes proto message ``message`` (full name) from proto3 JSON.

    Raises ``ValueError`` for unknown messages or mismatching JSON."""

def decode_proto(message: str, data: bytes) -> str:
    """Decodes proto message ``message`` (full name) to proto3 JSON."""

def run_pipeline(
    pipeline: bytes, options: Optional[dict] = None
) -> Tuple[
    List[Tuple[str, str, str, int]],
    List[Tuple[str, str, str, int, int, int, int]],
]:
    """Plans and runs a serialized Beam ``Pipeline`` on Oxbeam's local runner,
    with Python stages in this process and the GIL released meanwhile.

    Options: ``parallelism`` (int), ``fusion``, ``combiner_lifting``,
    ``dump_plan`` (bool). Returns ``(counters, distributions)`` as
    ``(transform, namespace, name, value)`` and
    ``(transform, namespace, name, count, sum, min, max)`` rows.

    Raises ``NotImplementedError`` for unsupported features,
    ``PipelineError``, ``UserCodeError``, ``ExecutionError``, ``InternalError``.
    """
