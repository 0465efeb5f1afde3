"""Pure policies, no I/O (clock and randomness injected): which sequence each record's request
belongs to (``sequence``: per-subtask counters; ``keyed``: a key's long-lived sequence), and
when to retry and when to stop sending (``resilience``)."""
