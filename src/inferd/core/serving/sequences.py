"""Triton's sequence batcher: the requests of a sequence (one ``sequence_id``, from
``sequence_start`` to ``sequence_end``) reach one model instance, in order, with the
control tensors the model declares in ``sequence_batching.control_input``.

- A sequence is pinned to one instance (each instance has its own thread) when it starts.
- ``direct``: a sequence also holds a batch slot of its instance (``max_batch_size`` slots,
  one without batching) from start to end; a batch has one row per slot up to the highest
  one taken, and a slot without a request this time gets zeros with READY false.
- ``oldest``: requests of up to ``max_batch_size`` different sequences of an instance run
  together, in arrival order; at most ``max_candidate_sequences`` sequences are live.
- Both wait up to ``max_queue_delay_microseconds`` for a batch to fill (0: run what came).
- Controls: START and END are the request's flags, READY is true for a row that carries a
  request, CORRID is the sequence id (a number, or a string for ``TYPE_STRING``).
- A sequence idle (no request) for ``max_sequence_idle_microseconds`` is released: its slot
  and state go, and a later request with its id that does not start it is refused.
- ``state: true`` (Python models): ``predict(self, inputs, states)`` receives one dict per
  row, the same dict for every request of a sequence, empty at its start.
- Refused: a request without a sequence id, a start on a live id, a continuation of an id
  that is not live, more live sequences than the model takes, more than one row.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from inferd.core.parameters import sequence_of
from inferd.core.serving.outputs import output_problems
from inferd.core.store.sequence_config import CORRID_TYPES, SequenceBatchingConfig
from inferd.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from inferd.types import DATATYPE_TO_NUMPY, TensorSpec

Arrays = dict[str, np.ndarray[Any, Any]]
States = list[dict[str, Any]] | None
Run = Callable[[Arrays, States], Arrays]
SequenceId = int | str


@dataclasses.dataclass(slots=True, eq=False)
class _Sequence:
    id: SequenceId
    instance: int
    slot: int
    last: float
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    pending: int = 0


@dataclasses.dataclass(slots=True)
class _Item:
    sequence: _Sequence
    arrays: Arrays
    start: bool
    end: bool
    future: asyncio.Future[Arrays]


class _Instance:
    def __init__(self, model: str, index: int, slots: int) -> None:
        self.queue: collections.deque[_Item] = collections.deque()
        self.wake = asyncio.Event()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"inferd-seq-{model}-{index}")
        self.slots: list[_Sequence | None] = [None] * slots
        self.live = 0


class Sequences:
    """The sequence batcher of one model version (started once the loop runs)."""

    def __init__(
        self,
        config: SequenceBatchingConfig,
        *,
        model: str,
        batching: bool,
        max_batch_size: int,
        instances: int,
        outputs: tuple[TensorSpec, ...],
        run: Run,
    ) -> None:
        self.config = config
        self._model = model
        self._batching = batching
        self._rows = max_batch_size if batching else 1
        self._instance_count = instances
        self._outputs = outputs
        self._run = run
        self._live: dict[SequenceId, _Sequence] = {}
        self._instances: list[_Instance] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._idle_s = config.max_sequence_idle_microseconds / 1e6
        self._delay_s = config.max_queue_delay_microseconds / 1e6
        self._controls = {c.control[0].kind: (c.name, c.control[0]) for c in config.control_input}
        corrid = self._controls.get("CONTROL_SEQUENCE_CORRID")
        self._corrid_type = CORRID_TYPES[corrid[1].data_type or ""] if corrid else None

    @property
    def live(self) -> int:
        return len(self._live)

    def start(self) -> None:
        slots = self._rows if self.config.strategy == "direct" else 0
        self._instances = [_Instance(self._model, i, slots) for i in range(self._instance_count)]
        self._tasks = [asyncio.ensure_future(self._work(i)) for i in self._instances]
        self._tasks.append(asyncio.ensure_future(self._reap()))

    # -- requests ---------------------------------------------------------------------------

    async def submit(
        self, parameters: Mapping[str, Any], arrays: Arrays, deadline: float | None
    ) -> Arrays:
        sid, start, end = sequence_of(self._model, parameters)
        if self._batching and any(a.shape[:1] != (1,) for a in arrays.values()):
            raise InvalidArgument(
                f"model '{self._model}': a sequence's request carries one row (batch size 1)"
            )
        if isinstance(sid, str) and self._corrid_type not in (None, "BYTES"):
            raise InvalidArgument(
                f"model '{self._model}' takes numeric sequence ids (its CORRID control is "
                f"{self._corrid_type}), got a string"
            )
        sequence = self._bind(sid, start)
        instance = self._instances[sequence.instance]
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        instance.queue.append(_Item(sequence, arrays, start, end, future))
        instance.wake.set()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                return await future
        except TimeoutError:
            raise DeadlineExceeded(
                f"model '{self._model}': sequence {sid!r}'s request passed its deadline"
            ) from None

    def _bind(self, sid: SequenceId, start: bool) -> _Sequence:
        sequence = self._live.get(sid)
        if start:
            if sequence is not None:
                raise InvalidArgument(
                    f"sequence {sid!r} of model '{self._model}' is live already; end it "
                    "(sequence_end) before starting it again"
                )
            sequence = self._open(sid)
        elif sequence is None:
            raise InvalidArgument(
                f"sequence {sid!r} of model '{self._model}' is not live (never started, "
                f"ended, or idle for over {self.config.max_sequence_idle_microseconds} µs); "
                "start it with sequence_start"
            )
        sequence.last = time.monotonic()
        sequence.pending += 1
        return sequence

    def _open(self, sid: SequenceId) -> _Sequence:
        index = min(range(len(self._instances)), key=lambda i: self._instances[i].live)
        instance = self._instances[index]
        slot = -1
        if self.config.strategy == "direct":
            free = [i for i, s in enumerate(instance.slots) if s is None]
            if not free:
                raise ResourceExhausted(
                    f"model '{self._model}': all {self._rows * len(self._instances)} sequence "
                    "slots are taken; end a sequence first",
                    retry_after_s=1.0,
                )
            slot = free[0]
        elif len(self._live) >= self.config.max_candidate_sequences:
            raise ResourceExhausted(
                f"model '{self._model}': {self.config.max_candidate_sequences} sequences are "
                "live (max_candidate_sequences); end one first",
                retry_after_s=1.0,
            )
        sequence = _Sequence(sid, index, slot, time.monotonic())
        if slot >= 0:
            instance.slots[slot] = sequence
        instance.live += 1
        self._live[sid] = sequence
        return sequence

    def _release(self, sequence: _Sequence) -> None:
        if self._live.get(sequence.id) is not sequence:
            return
        del self._live[sequence.id]
        instance = self._instances[sequence.instance]
        instance.live -= 1
        if sequence.slot >= 0:
            instance.slots[sequence.slot] = None

    # -- execution --------------------------------------------------------------------------

    async def _work(self, instance: _Instance) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not instance.queue:
                instance.wake.clear()
                await instance.wake.wait()
            if self._delay_s and len(instance.queue) < self._rows:
                await asyncio.sleep(self._delay_s)
            batch = self._take(instance)
            if not batch:
                continue
            try:
                outputs = await loop.run_in_executor(instance.executor, self._execute, batch)
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            else:
                for row, item in self._positions(batch):
                    if not item.future.done():
                        item.future.set_result(
                            {k: v[row : row + 1] for k, v in outputs.items()}
                            if self._batching
                            else outputs
                        )
            finally:
                done = time.monotonic()  # idle time counts from a request's answer
                for item in batch:
                    item.sequence.pending -= 1
                    item.sequence.last = done
                    if item.end:
                        self._release(item.sequence)

    def _take(self, instance: _Instance) -> list[_Item]:
        """Up to a batch of queued requests: one per sequence, rows of one shape."""
        taken: list[_Item] = []
        later: list[_Item] = []
        seen: set[int] = set()
        shape: tuple[Any, ...] | None = None
        while instance.queue and len(taken) < self._rows:
            item = instance.queue.popleft()
            if item.future.done():  # its caller gave up (deadline) before it ran
                item.sequence.pending -= 1
                continue
            key = tuple((k, v.shape) for k, v in sorted(item.arrays.items()))
            if id(item.sequence) in seen or (shape is not None and key != shape):
                later.append(item)
                continue
            shape = key
            seen.add(id(item.sequence))
            taken.append(item)
        instance.queue.extendleft(reversed(later))
        return taken

    def _positions(self, batch: list[_Item]) -> list[tuple[int, _Item]]:
        if self.config.strategy == "direct" and self._batching:
            return [(item.sequence.slot, item) for item in batch]
        return list(enumerate(batch))

    def _execute(self, batch: list[_Item]) -> Arrays:
        """One batch, in the instance's thread: inputs, controls and states by row."""
        rows: list[_Item | None] = list(batch)
        if self.config.strategy == "direct" and self._batching:
            rows = [None] * (max(item.sequence.slot for item in batch) + 1)
            for item in batch:
                rows[item.sequence.slot] = item
        template = batch[0].arrays
        if self._batching:
            inputs = {
                name: np.concatenate(
                    [r.arrays[name] if r is not None else _blank(array) for r in rows]
                )
                for name, array in template.items()
            }
        else:
            inputs = dict(template)
        inputs.update(
            self._control_tensors([(r.sequence.id, r.start, r.end) if r else None for r in rows])
        )
        states = [r.sequence.state if r else {} for r in rows] if self.config.state else None
        outputs = self._run(inputs, states)
        problems = output_problems(self._outputs, outputs)
        if problems:
            raise InternalError(
                f"internal error: model '{self._model}' returned outputs that do not match "
                f"its declaration ({'; '.join(problems)})"
            )
        return outputs

    def _control_tensors(self, rows: list[tuple[SequenceId, bool, bool] | None]) -> Arrays:
        """The declared controls, one value a row (``rows``: id, start, end; None: no
        request in that row)."""
        out: Arrays = {}
        shape = (len(rows), 1) if self._batching else (1,)
        for kind, (name, control) in self._controls.items():
            if kind == "CONTROL_SEQUENCE_CORRID":
                assert self._corrid_type is not None
                values: list[Any] = [r[0] if r else 0 for r in rows]
                if self._corrid_type == "BYTES":
                    array = np.array([str(v).encode() for v in values], dtype=object)
                else:
                    array = np.array(values, dtype=DATATYPE_TO_NUMPY[self._corrid_type])
                out[name] = array.reshape(shape)
                continue
            flags = [
                r is not None
                and (
                    kind == "CONTROL_SEQUENCE_READY"
                    or (kind == "CONTROL_SEQUENCE_START" and r[1])
                    or (kind == "CONTROL_SEQUENCE_END" and r[2])
                )
                for r in rows
            ]
            out[name] = _control_values(control, flags).reshape(shape)
        return out

    def warm_run(self, arrays: Arrays) -> Arrays:
        """The load's warm-up: one row that starts and ends a sequence of its own."""
        inputs = dict(arrays)
        inputs.update(self._control_tensors([(0, True, True)]))
        return self._run(inputs, [{}] if self.config.state else None)

    async def _reap(self) -> None:
        """Release the sequences idle for longer than the model allows."""
        every = max(self._idle_s / 4, 0.005)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for sequence in list(self._live.values()):
                if sequence.pending == 0 and now - sequence.last > self._idle_s:
                    self._release(sequence)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for instance in self._instances:
            while instance.queue:
                item = instance.queue.popleft()
                if not item.future.done():
                    item.future.set_exception(Unavailable(f"model '{self._model}' unloaded"))
            instance.executor.shutdown(wait=False)
        self._live.clear()


def _blank(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A row of zeros (empty strings for BYTES) like ``array``'s."""
    if array.dtype == object:
        return np.full(array.shape, b"", dtype=object)
    return np.zeros_like(array)


def _control_values(control: Any, flags: list[bool]) -> np.ndarray[Any, Any]:
    for values, dtype in (
        (control.int32_false_true, np.int32),
        (control.fp32_false_true, np.float32),
        (control.bool_false_true, np.bool_),
    ):
        if values is not None:
            return np.array([values[int(f)] for f in flags], dtype=dtype)
    raise AssertionError("a control without values")  # model_config refuses it
