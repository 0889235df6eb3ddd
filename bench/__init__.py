"""``python -m bench``: the booking saga's benchmark. Results: docs/benchmarks.md.

One module per experiment, each an async function of a ``bench.harness.Harness``:
``latency`` (one at a time, and where the time goes), ``throughput`` (against
concurrency), ``floor_phase`` (against the floor workflows of ``floor``),
``scale`` (one worker process against two), ``backlog`` (rollbacks behind a
backlog), ``web_submit``, ``form_start``, ``optimisations`` and ``memory``.
``sides`` says what the baseline (``seed_style``) and ours are, ``plan`` how much
to measure, ``ratios`` what the results are judged by, and ``report`` (with
``report_phases`` and ``plot``) writes them out. ``chaos``, ``dispatch`` and
``fairness`` are experiments with their own command line and their own stack.
"""
