"""Hypothesis profiles for the fuzzers (``tests/*/test_fuzz_*.py``).

``ci`` (the default) keeps the whole fuzz set to about a minute on two shared
cores, for ``make test`` and CI; ``soak`` is for a local run (``make fuzz``,
or ``HYPOTHESIS_PROFILE=soak``). A failure prints the failing example and a
``@reproduce_failure`` blob; pin it as a regression test next to the fix.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Each example is a real HTTP request or a Temporal RPC: slow by hypothesis's
# standards, and slower still on a shared machine.
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=120, deadline=None, suppress_health_check=_SLOW_IS_FINE)
settings.register_profile("soak", max_examples=2000, deadline=None, suppress_health_check=_SLOW_IS_FINE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --- generators every fuzzer shares ---------------------------------------------
# Each found a 500 in a fuzz of the provider service from outside that the
# fuzzers here had missed; they stay so the fuzzers keep trying them.

from hypothesis import strategies as st  # noqa: E402  (after the profiles, which must load first)

#: A charset Python does not know made the body's decoding raise LookupError.
charsets = st.sampled_from(["", "utf-8", "UTF-8", "latin-1", "utf-16", "bogus", "utf-8; q=x", "x-no-such-codec"])


def content_type(media: str) -> st.SearchStrategy[str]:
    """``media`` with a charset parameter that may be one nobody knows."""
    return charsets.map(lambda cs: f"{media}; charset={cs}" if cs else media)


#: Deep nesting ran the JSON parser out of recursion.
deep_json = st.builds(lambda n, open_: open_ * n, st.integers(20, 6000), st.sampled_from(["[", '{"a":'])).map(
    lambda opened: opened + ("]" * opened.count("[")) + ("}" * opened.count("{"))
)

#: Dates at the calendar's edges (the ledger's day loop stepped past 9999-12-31), and days
#: that are not ISO dates but were stored as if they were.
edge_days = st.sampled_from(
    ["9999-12-31", "9999-12-30", "0001-01-01", "2027-1-4", "20270104", "2027-W01-1", "NaN", "2030-02-30", "x" * 30_000]
)

#: Integers SQLite cannot store (2^63 and up), and their neighbours.
huge_ints = st.one_of(
    st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**100]), st.integers(min_value=2**62, max_value=2**70)
)
