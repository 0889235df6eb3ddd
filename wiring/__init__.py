"""The application wiring: how the pieces are connected to Temporal and run.

One job per module: connecting and telling an outage from a refusal
(``client``); starting a booking (``start``) with its summaries and memo
(``summaries``); reading an execution (``executions``) and the workaround that
reads a paused one (``paused_status``); the status query merged with the
server's live attempts (``live_status``); how a booking ended and the wait for
it through outages (``outcome``); the Update senders (``updates``); following a
booking from a terminal (``watch``); the worker builder (``worker``); the
payload codec (``codec``); the metrics and tracing setup (``metrics``,
``tracing``); what every entry point's process does at start and exit
(``entry_point``); and the local stack a dev setup, the bench and the tests
start (``local_stack``).

It sits above ``workflows`` and ``activities`` (the worker registers them) and
below the processes that use it (``web``, ``providers``, ``bench``, the
``run_*.py`` entry points). Nothing in ``trip``, ``saga``, ``workflows`` or
``activities`` may import it.
"""
