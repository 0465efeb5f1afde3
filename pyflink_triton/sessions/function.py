"""A model function: :class:`TritonInference`, built at registration, opens the sessions.

:class:`TritonInference` is the picklable description of a model function (validated options
plus the column signature, and the mode it was created for); PyFlink ships it with the job.
Each parallel function instance calls :meth:`TritonInference.open` in Flink's open(), with its
subtask index, attempt, metric group and parallelism (a :class:`Subtask`). open() connects
to the servers of 'endpoint' (``servers``), checks the signature against the model they serve
(fetched anew every time: it may have changed since registration), starts the instance's
sequence IDs, guard and health checks (its :class:`~.context.InstanceContext`) and hands them
to the mode's session class from :data:`SESSIONS`. The sessions' contract is ``contract``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyflink.table.types import DataType

from ..codecs.fallback import ResultPolicy
from ..codecs.signature import ColumnDeclaration, ModelSignature, OutputDeclaration
from ..errors import TritonConfigError, TritonError
from ..options import Mode, TritonOptions
from ..policies.keyed import KeyedSequencePolicy, new_incarnation
from ..policies.sequence import LIVE_SEQUENCES, SequencePolicy
from ..policies.slots import SequenceSlots, SlotBudget
from ..wire.request import ModelRef
from .context import InstanceContext
from .contract import InferenceSession
from .keyed import KeyedInferenceSession
from .metrics import InferenceMetrics
from .per_record import AsyncInferenceSession, SyncInferenceSession
from .reliable import RequestGuard
from .servers import AsyncServerPool, ServerPool, Servers
from .vectorized import BatchInferenceSession

log = logging.getLogger(__name__)

# The session class of each mode: a new mode is a class and an entry here.
SESSIONS: dict[Mode, type[InferenceSession[Any, Any, Any, Any]]] = {
    "sync": SyncInferenceSession,
    "async": AsyncInferenceSession,
    "vectorized": BatchInferenceSession,
    "keyed": KeyedInferenceSession,
}


@dataclass(frozen=True)
class Subtask:
    """Which parallel instance of the function opens a session."""

    index: int
    attempt: int
    metric_group: Any | None  # Flink's metric group of the function (None: no metrics)
    parallelism: int  # how many parallel instances the function has


@dataclass(frozen=True)
class TritonInference:
    options: TritonOptions
    signature: ModelSignature
    results: ResultPolicy
    mode: Mode | None = None  # the mode open() opens; None: sync unless open() is told

    @classmethod
    def create(cls, options: Mapping[str, object] | TritonOptions,
               inputs: Sequence[ColumnDeclaration] | None = None,
               output: OutputDeclaration | None = None, *,
               mode: Mode | None = None) -> TritonInference:
        """Validate everything that can be validated at registration. ``mode``: how the
        function calls the model ('sync', 'async', 'vectorized', or 'keyed' for keyed
        sequences), whose options differ; unset, only what holds in every per-record mode.

        Columns whose types are not declared are looked up in the model's metadata on the
        server, so the server must be reachable then; declared columns need no server.
        """
        parsed = options if isinstance(options, TritonOptions) else TritonOptions.from_dict(options)
        if mode is not None:
            parsed.check_mode(mode)
        else:
            parsed.check_sequence_scope(False)
        model = ModelRef(parsed.model_name, parsed.model_version)

        def fetch_served() -> tuple[dict[str, Any], dict[str, Any]]:
            servers = Servers(parsed, InferenceMetrics())
            pool = ServerPool(servers)
            try:
                return servers.served_model(model, pool.transport)
            except TritonError as e:
                raise TritonConfigError(
                    f"Cannot derive the input and output columns of model {model} from the "
                    f"server: {e} Declare the columns (INPUT (...) and OUTPUT (...) in CREATE "
                    "MODEL, inputs= and output= in Python) or make the server reachable when "
                    "the function is registered.") from None
            finally:
                pool.close()

        signature = ModelSignature.resolve(model, parsed, inputs, output, fetch_served)
        return cls(parsed, signature, ResultPolicy.from_options(
            parsed.default_value, parsed.error_fields, signature.outputs, signature.row_output),
            mode)

    @property
    def model(self) -> ModelRef:
        return ModelRef(self.options.model_name, self.options.model_version)

    @property
    def result_type(self) -> DataType:
        return self.results.result_type

    def open(self, subtask_index: int, attempt: int = 0, metric_group: Any | None = None,
             parallelism: int = 1, *,
             mode: Mode | None = None) -> InferenceSession[Any, Any, Any, Any]:
        """The session of one parallel instance, in ``mode`` (by default the mode the function
        was created for, else sync): connect, check the signature against the served model,
        start the ID counter. ``metric_group``: Flink's metric group of the function, to
        report metrics in; ``parallelism``: how many parallel instances the function has.
        An asyncio session's connections open on its first call."""
        session = SESSIONS[mode or self.mode or "sync"]
        subtask = Subtask(subtask_index, attempt, metric_group, parallelism)
        options = self.options
        metrics = InferenceMetrics(subtask.metric_group)
        servers = Servers(options, metrics)
        # The checks go over a blocking pool: the session's own if it blocks (an asyncio
        # pool connects on its first call, from PyFlink's event loop, which starts later).
        checks = ServerPool(servers)
        try:
            context = self._context(servers, checks, subtask, session, metrics)
            if session.blocking:
                return session(context, checks)
            checks.close()
            return session(context, AsyncServerPool(servers, options.max_concurrent_requests))
        except BaseException:
            checks.close()
            servers.close()
            raise

    def _context(self, servers: Servers, checks: ServerPool, subtask: Subtask,
                 session: type[InferenceSession[Any, Any, Any, Any]],
                 metrics: InferenceMetrics) -> InstanceContext:
        options, mode = self.options, session.mode
        options.check_mode(mode)  # (also when the function was created for another mode)
        policy = SequencePolicy.from_options(options)
        if not session.sequence_per_key:
            policy.check_senders(subtask.parallelism)
        # Fetched anew by every open(): the served model may have changed since registration
        # (or since the last attempt).
        metadata, config = servers.served_model(self.model, checks.transport)
        bound = self.signature.bind(self.model, metadata, config, options)
        keyed = None
        if session.sequence_per_key:
            per_key = KeyedSequencePolicy.for_model(options, self.model.name, config)
            budget = SlotBudget.for_subtask(self.model.name, SequenceSlots.of_model(config),
                                            subtask.parallelism, options.sequence_slots)
            keyed = per_key.for_incarnation(new_incarnation(), budget)
        # (keyed sequences draw no IDs from it: theirs hold a random incarnation)
        sequence_ids = policy.for_subtask(subtask.index, attempt=subtask.attempt,
                                          live=None if keyed else LIVE_SEQUENCES)
        try:
            metrics.gauge("sequenceCounter", lambda: sequence_ids.issued)
            guard = RequestGuard(options, metrics, breakers_open=servers.router.breakers_open)
            log.info("Triton model %s at %s (%s, %s): subtask %d of %d, attempt %d, %s; %s; %s",
                     self.model, servers.describe(), options.effective_protocol, mode,
                     subtask.index, subtask.parallelism, subtask.attempt,
                     sequence_ids.describe() if keyed is None else keyed.describe(),
                     guard.describe(), self.signature.describe())
            if options.health_check_enabled:
                servers.start_health_checks(f"{self.model.name}-{subtask.index}")
        except BaseException:
            sequence_ids.close()
            raise
        return InstanceContext(self.model, options, self.results, bound, sequence_ids, guard,
                               servers, keyed)
