"""Checks of what a stateful test model logged about the sequences it received.

``records`` are the lines of a fault model's request log (``FaultRepository.records``): one dict
per request, in arrival order, with ``corrid``, ``x``, ``start``, ``end`` (and, for
``running_total``, ``flush`` and ``total``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def by_sequence(records: Iterable[dict[str, Any]], base: str) -> dict[str, list[dict[str, Any]]]:
    """The lines of each sequence ID starting with ``{base}-``, in arrival order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if isinstance(record["corrid"], str) and record["corrid"].startswith(f"{base}-"):
            grouped[record["corrid"]].append(record)
    return dict(grouped)


def keyed_id_parts(sequence_id: str, base: str) -> tuple[str, str, int]:
    """(key, incarnation, n) of ``{base}-{key}-{incarnation}-{n}``."""
    key, incarnation, number = sequence_id.removeprefix(f"{base}-").rsplit("-", 2)
    return key, incarnation, int(number)


def assert_running_totals(lines: list[dict[str, Any]], offset: int = 0) -> None:
    """One running_total sequence: START first and only first, every total the sum of the X
    counted so far (plus ``offset``), flushes counted nowhere and only as END, END last."""
    corrid = lines[0]["corrid"]
    assert lines[0]["start"], f"{corrid} did not begin with START: {lines[0]}"
    assert not any(line["start"] for line in lines[1:]), f"{corrid}: START twice: {lines}"
    assert not any(line.get("unknown") for line in lines), f"{corrid}: unknown state: {lines}"
    ends = [i for i, line in enumerate(lines) if line["end"]]
    assert ends in ([], [len(lines) - 1]), f"{corrid}: END not last or twice: {lines}"
    total = offset
    for line in lines:
        if line["flush"]:
            assert line["end"], f"{corrid}: a flush that is not an END: {line}"
        else:
            total += line["x"]
        assert line["total"] == total, f"{corrid}: total {line['total']} != {total}: {lines}"


def assert_no_live_sequences(http_port: int, model: str, sequence_ids: Iterable[str]) -> None:
    """Triton holds none of ``sequence_ids`` open: a request without START for each is refused
    with "must specify the START flag" (Triton has no API listing live sequences; this probe
    would end a live one, and fail)."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    try:
        live = []
        for sequence_id in sequence_ids:
            x = httpclient.InferInput("X", [1], "INT64")
            x.set_data_from_numpy(np.zeros(1, dtype=np.int64))
            try:
                client.infer(model, [x], sequence_id=sequence_id, sequence_start=False,
                             sequence_end=True)
                live.append(sequence_id)
            except InferenceServerException as e:
                assert "must specify the START flag" in str(e), e
        assert not live, f"Triton still held {len(live)} sequence(s) open: {live[:5]}"
    finally:
        client.close()
