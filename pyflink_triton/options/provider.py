"""This package as Flink's model provider 'triton': its identifier, how Flink matches it, and
the messages for options that are not the provider's or are missing (the first in the format of
Flink's FactoryUtil)."""

from __future__ import annotations

import difflib

PROVIDER = "triton"

# Flink's FactoryUtil.discoverFactory compares factoryIdentifier().equals(provider): no
# trimming, no lower-casing. A CREATE MODEL with 'Triton' is stored and finds no provider.
PROVIDER_SPELLING = ("Flink matches a model's 'provider' exactly and case-sensitively "
                     f"(no trimming, no lower-casing); write '{PROVIDER}'")


def is_provider_misspelled(text: str) -> bool:
    """Whether ``text`` means this provider (' Triton ') but is not what Flink matches."""
    return text != PROVIDER and text.strip().lower() == PROVIDER


def parse_provider(text: str) -> str:
    if is_provider_misspelled(text):
        raise ValueError(PROVIDER_SPELLING)
    if text != PROVIDER:
        raise ValueError(f"this package implements the '{PROVIDER}' provider only")
    return PROVIDER


def unsupported_options_message(unknown: list[str], supported: list[str]) -> str:
    lines = [f"Unsupported options found for '{PROVIDER}'.", "", "Unsupported options:", ""]
    for key in unknown:
        close = difflib.get_close_matches(key, supported, n=1)
        lines.append(f"{key}" + (f" (did you mean '{close[0]}'?)" if close else ""))
    lines += ["", "Supported options:", "", *supported]
    return "\n".join(lines)


def missing_options_message(missing: list[str]) -> str:
    return f"Missing required option(s) for provider '{PROVIDER}': {', '.join(missing)}."
