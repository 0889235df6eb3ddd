"""The application wiring: how the pieces are connected to Temporal and run.

The client connection and its helpers (``client``), the worker builder
(``worker``), the payload codec (``codec``), the metrics and tracing setup
(``metrics``, ``tracing``), process exits (``process``) and the local
processes a dev stack, the bench and the tests start (``processes``).

It sits above ``workflows`` and ``activities`` (the worker registers them) and
below the processes that use it (``web``, ``providers``, ``bench``, the
``run_*.py`` entry points). Nothing in ``trip``, ``saga``, ``workflows`` or
``activities`` may import it.
"""
