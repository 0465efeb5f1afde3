"""The options of a Triton model function as the adapters get them: parsed from Flink's option
texts and checked against each other, at registration, before any job runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import TritonConfigError
from . import connection_rules, modes, reliability_rules, sequence_rules
from .endpoint import redact_url_credentials
from .modes import Mode
from .provider import missing_options_message, unsupported_options_message
from .spec import OptionSpec, OptionValues, fields_with_specs


# (repr=False keeps OptionValues' masking repr; the fields are OptionValues', unchanged.)
@dataclass(frozen=True, repr=False)
class TritonOptions(OptionValues):
    """Every option's value, checked; build it with :meth:`from_dict`."""

    @classmethod
    def from_dict(cls, options: Mapping[str, object]) -> TritonOptions:
        """Parse and validate Flink-style options; raises ``TritonConfigError`` on any problem."""
        raw = {str(k).strip(): _as_text(v) for k, v in options.items()}
        specs = {spec.key: (f.name, spec) for f, spec in fields_with_specs()}
        unknown = sorted(set(raw) - set(specs))
        if unknown:
            raise TritonConfigError(unsupported_options_message(unknown, sorted(specs)))
        missing = [key for key, (_, spec) in specs.items() if spec.required and key not in raw]
        if missing:
            raise TritonConfigError(missing_options_message(missing))
        values, problems = {}, []
        for key, text in raw.items():
            name, spec = specs[key]
            try:
                values[name] = spec.parse(text)
            except ValueError as e:
                problems.append(_invalid_value_message(spec, text, str(e)))
        if problems:
            raise TritonConfigError("\n".join(problems))
        parsed = cls(**values)
        # How the values combine; in this order, which decides the message when several
        # rules are broken at once.
        sequence_rules.check_sequence_options(parsed)
        connection_rules.check_protocol(parsed)
        modes.check_mode_option(parsed)
        reliability_rules.check_reliability(parsed)
        connection_rules.check_tls(parsed)
        connection_rules.check_credentials(parsed)
        connection_rules.check_sequence_header(parsed)
        connection_rules.check_grpc_metadata(parsed)
        return parsed

    def check_mode(self, mode: Mode) -> None:
        """Refuse options that do not fit a function calling the model in ``mode``
        (:func:`.modes.check_mode`)."""
        modes.check_mode(self, mode)

    def check_sequence_scope(self, keyed: bool) -> None:
        """Refuse options of the other kind of function, keyed or per-record
        (:func:`.modes.check_sequence_scope`)."""
        modes.check_sequence_scope(self, keyed)


def _as_text(value: object) -> str:
    """A value of the Python API's dict as the text Flink would pass (a bool as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _invalid_value_message(spec: OptionSpec, text: str, reason: str) -> str:
    shown = "(secret value not shown)" if spec.secret else repr(redact_url_credentials(text))
    return (f"Invalid value for option '{spec.key}': {shown}: {reason}. "
            f"Expected {spec.accepted}.")
