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
