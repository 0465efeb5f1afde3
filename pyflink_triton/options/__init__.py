"""Every option of a Triton model function, declared once.

- ``values``: the value parsers, one option's text to its value;
- ``provider``: the provider name 'triton', as Flink matches it;
- ``sequence_ids``: what Triton accepts as a sequence ID, and the room generated IDs need;
- ``spec``: the declarations, one :class:`OptionSpec` (key, parser, default, docs) per field
  of ``OptionValues``: the single source of keys, defaults and docs;
- ``sequence_rules``, ``connection_rules``, ``reliability_rules``: how options combine, each
  rule once, beside its domain;
- ``modes``: which options each way of calling the model accepts (one table), and its checks;
- ``triton_options``: :class:`TritonOptions` and its ``from_dict``, which parses the options
  with the specs and runs the rules, at registration, before any job runs;
- ``reference``: docs/options.md, generated from the specs;
- ``endpoint``: the Triton endpoint URL.

The names the rest of the package uses are re-exported here.
"""

from .modes import Mode
from .provider import PROVIDER, PROVIDER_SPELLING, is_provider_misspelled
from .reference import reference_markdown
from .spec import option_specs
from .triton_options import TritonOptions
from .values import (
    format_duration,
    parse_bool,
    parse_headers,
    parse_null_input,
    parse_positive_duration,
    parse_tensor_names,
)

__all__ = [
    "PROVIDER",
    "PROVIDER_SPELLING",
    "Mode",
    "TritonOptions",
    "format_duration",
    "is_provider_misspelled",
    "option_specs",
    "parse_bool",
    "parse_headers",
    "parse_null_input",
    "parse_positive_duration",
    "parse_tensor_names",
    "reference_markdown",
]
