"""Workflow code: the booking workflow, built on the generic ``saga`` core.

It stands on ``trip`` (names, models, status) and ``saga`` only: never on
``activities`` (it names them by string) or ``wiring``.
"""
