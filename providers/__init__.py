"""A stand-in for the car-rental, hotel and airline APIs.

It runs as its own process (``python -m providers``) with a SQLite ledger, so
the saga talks to something that can really be slow, down, sold out or holding
a reservation after a timeout. Faults come only from the scenario named on each
request (see ``trip.scenarios``); nothing in the saga knows they exist.
"""
