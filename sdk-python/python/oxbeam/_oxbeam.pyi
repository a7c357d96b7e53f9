"""The Rust extension module of Oxbeam's Python SDK (crate ``oxbeam-python``)."""

from typing import Any, Dict, List, Optional, Tuple

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
        """Encodes ``values[i]`` with ``metas[i] = (timestamp_micros, window)``
        or ``(timestamp_micros, window, pane_info)``."""

class StateClient:
    """User state and timers of a stage's stateful DoFns (used by
    ``oxbeam._runtime``): ``t`` indexes the stage's stateful transforms,
    ``c`` a transform's state cells, ``f`` its timer families. Requests
    address the current key and window and are served from the running
    bundle's user state; outside a bundle they raise ``RuntimeError``."""

    def set_current(self, t: int, key: object, window: object) -> None:
        """Makes ``key`` (encoded with the input's key coder) and ``window`` current."""
    def set_current_encoded(self, t: int, key: bytes, window: object) -> None:
        """As ``set_current``, with the key already encoded (a fired timer's)."""
    def read(self, t: int, c: int) -> list:
        """Every value of bag cell ``c``, in append order."""
    def append(self, t: int, c: int, value: object) -> None:
        """Appends ``value`` to bag cell ``c``."""
    def write(self, t: int, c: int, values: list) -> None:
        """Replaces the contents of bag cell ``c`` by ``values``."""
    def clear(self, t: int, c: int) -> None:
        """Empties bag cell ``c``."""
    def ordered_read(self, t: int, c: int, start: int, end: int) -> List[Tuple[int, object]]:
        """Entries ``(sort key micros, value)`` of ordered-list cell ``c`` in ``[start, end)``."""
    def ordered_append(self, t: int, c: int, sort_key: int, value: object) -> None:
        """Adds ``value`` at ``sort_key`` (micros) to ordered-list cell ``c``."""
    def ordered_clear(self, t: int, c: int, start: int, end: int) -> None:
        """Removes the entries of ordered-list cell ``c`` in ``[start, end)``."""
    def map_get(self, t: int, c: int, key: object) -> Optional[object]:
        """The value under ``key`` in map cell ``c``, or ``None``."""
    def map_put(self, t: int, c: int, key: object, value: object) -> None:
        """Sets ``key`` to ``value`` in map cell ``c``."""
    def map_remove(self, t: int, c: int, key: object) -> None:
        """Removes ``key`` from map cell ``c``."""
    def map_keys(self, t: int, c: int) -> list:
        """The keys of map cell ``c``, in first-insertion order."""
    def map_clear(self, t: int, c: int) -> None:
        """Empties map cell ``c``."""
    def set_timer(self, t: int, f: int, tag: str, fire: int, hold: int, pane: Optional[object] = None) -> None:
        """Sets timer ``tag`` of family ``f`` to fire at ``fire`` with output
        timestamp ``hold`` (micros), for the current key and window."""
    def clear_timer(self, t: int, f: int, tag: str) -> None:
        """Clears timer ``tag`` of family ``f`` for the current key and window."""

class WorkerPool:
    """A Beam worker pool (``BeamFnExternalWorkerPool``) in this process, for
    ``--environment_type=LOOPBACK``: each ``StartWorker`` runs a worker (the
    Python and Wasm executors) as a thread here, serving the runner's control
    endpoint until the runner closes it."""
    def __init__(self) -> None: ...
    @property
    def endpoint(self) -> str:
        """``host:port`` the pool listens on (127.0.0.1, an ephemeral port)."""
    def stop(self) -> None:
        """Stops accepting ``StartWorker`` requests."""

class SumTable:
    """The precombine table of ``CombinePerKey(sum)`` for plain pairs: an
    exact ``str`` or ``int`` key (within 64 bits) and an exact ``int``
    (within 64 bits) or ``float`` value, summed in Rust with no Python
    object per key."""

    def __init__(self) -> None: ...
    def add(self, pairs: List[Any], count: bool = False) -> int:
        """Adds each ``(key, value)`` in order (1 for each with ``count``:
        ``Count.PerKey``'s precombine); returns how many it added:
        all, or fewer when it reached a pair it does not take (or whose sum
        would leave 64 bits), which it leaves with the rest to the caller."""
    def __len__(self) -> int: ...
    def take_items(self) -> List[Tuple[Any, Any]]:
        """Its ``(key, sum)`` pairs; empties it."""
    def drain_into(self, table: Dict[Any, Any]) -> None:
        """``table[key] = table.get(key, 0) + sum`` for each of its keys;
        empties it."""

def sum_into(table: Dict[Any, Any], pairs: List[Any]) -> int:
    """``table[k] = table.get(k, 0) + v`` for each ``(k, v)`` of ``pairs``
    (the precombine of ``CombinePerKey(sum)``), in C. Returns how many pairs
    it consumed; it stops before a pair that is not a 2-tuple or whose
    addition raises, for the caller's own loop to fail on."""


def encode_values(components: bytes, coder_id: str, values: list) -> List[bytes]:
    """Encodes each value (outer context) with coder ``coder_id`` of the
    serialized ``Components`` message (TestStream elements).

    Raises ``ValueError`` if a value does not fit the coder."""

def encode_proto(message: str, json: str, blobs: Optional[List[bytes]] = None) -> bytes:
    """Encodes proto message ``message`` (full name) from proto3 JSON.

    A bytes field whose value is ``BLOB_MARKER`` followed by a decimal index
    ``i`` takes ``blobs[i]`` (large payloads need not cross as base64).

    Raises ``ValueError`` for unknown messages, mismatching JSON or a blob
    index out of range."""

BLOB_MARKER: bytes
"""The prefix of a bytes field that refers to one of ``encode_proto``'s blobs."""

def serve_worker(control_endpoint: str, worker_id: str) -> None:
    """Serves as an SDK harness for Python stages: connects to a runner's Fn
    API control endpoint and runs the bundles it sends with this process's
    Python executor (GIL released between calls) until the runner closes
    the control stream. Raises ``ExecutionError`` if the runner cannot be
    reached or the stream fails."""

def expand_outputs(
    results: List[Any], metas: List[Any], values: List[Any], out_metas: List[Any],
    failed: List[int],
) -> None:
    """Flattens a FlatMap's ``results`` (one per input element: a list, any
    other iterable, or ``None`` for no output) into ``values``, and puts
    ``metas[i]`` in ``out_metas`` once per output of ``results[i]``. On an
    exception sets ``failed[0]`` to the index of the result that raised and
    raises it."""

def prestart_workers(command: str, count: int) -> None:
    """Starts ``count`` harness processes for the process-environment command
    ``command`` (``PY -m oxbeam.runners.worker``) now, so they import while
    the pipeline is being built; the next run whose environment has that
    command takes them instead of starting its own. Other commands are
    ignored."""

def adopt_worker(command: str, pid: int, stdin: int, stdout: int, stderr: int) -> None:
    """Hands over a harness process for ``command`` forked from this process:
    child ``pid`` waits for the warm shim's line (JSON ``env`` and ``argv``)
    on the pipe ``stdin`` and writes its output to the pipes ``stdout`` and
    ``stderr``. The next run whose environment has that command takes it.
    From then on the three descriptors belong to this module (do not close
    them) and it reaps the child (do not wait for it). Raises ``ValueError``
    if ``command`` is not a harness kept warm or a descriptor is not open;
    the caller still owns them then."""

def release_workers(command: str) -> None:
    """Stops the processes ``prestart_workers`` started, or ``adopt_worker``
    took, for ``command`` that no run took."""

def submit_job(
    endpoint: str, pipeline: bytes, options: str, job_name: str
) -> Tuple[
    str,
    str,
    str,
    Tuple[
        List[Tuple[str, str, str, int]],
        List[Tuple[str, str, str, int, int, int, int]],
        List[Tuple[str, str, str, int, int]],
        List[Tuple[str, str, str, List[str]]],
    ],
]:
    """Runs a serialized Beam ``Pipeline`` on the Beam job service at
    ``endpoint`` (``host:port``, e.g. ``oxbeam job-server``) with the pipeline
    options in ``options`` (a JSON object): Prepare, Run, then its state until
    it ends (Ctrl-C cancels the job and raises ``KeyboardInterrupt``).
    Returns ``(job_id, state, error messages, metric rows)``; the rows are
    ``run_pipeline``'s, filled when the state is ``DONE``. Raises
    ``ExecutionError`` if the service cannot be reached or refuses the job."""

def decode_proto(message: str, data: bytes) -> str:
    """Decodes proto message ``message`` (full name) to proto3 JSON."""

def run_pipeline(
    pipeline: bytes, options: Optional[dict] = None
) -> Tuple[
    List[Tuple[str, str, str, int]],
    List[Tuple[str, str, str, int, int, int, int]],
    List[Tuple[str, str, str, int, int]],
    List[Tuple[str, str, str, List[str]]],
]:
    """Plans and runs a serialized Beam ``Pipeline`` on Oxbeam's local runner,
    with Python stages in this process and the GIL released meanwhile; Wasm
    stages (``oxbeam:env:wasm:v1``) run in the process's Wasm executor.

    Options: ``parallelism`` (int), ``fusion``, ``combiner_lifting``,
    ``dump_plan``, ``streaming`` (bool: run on the streaming engine; plans
    with a TestStream or unbounded PCollections always do),
    ``harness_processes`` (int: harness processes per ``beam:env:process:v1``
    environment), ``echo_harness_output`` (bool). Returns ``(counters, distributions, gauges, string_sets)`` as
    ``(transform, namespace, name, value)``,
    ``(transform, namespace, name, count, sum, min, max)``,
    ``(transform, namespace, name, value, timestamp_millis)`` and
    ``(transform, namespace, name, [strings])`` rows.

    Raises ``NotImplementedError`` for unsupported features,
    ``PipelineError``, ``UserCodeError``, ``ExecutionError``, ``InternalError``.

    Ctrl-C (called from the main thread) cancels the job — Python user code
    on worker threads gets ``KeyboardInterrupt`` at its next bytecode — and
    raises ``KeyboardInterrupt`` once it stopped (~0.1 s). For a streaming
    pipeline the first Ctrl-C drains it (it then returns normally), the
    second cancels it.
    """

def wat_to_wasm(text: str) -> bytes:
    """Compiles WebAssembly text (WAT) to a binary module, e.g. a Wasm UDF
    guest written by hand (see ``oxbeam.wasm``).

    Raises ``ValueError`` (with line and column) for invalid text."""
