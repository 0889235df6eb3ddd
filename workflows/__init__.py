"""Workflow code: the generic saga core and the booking workflow built on it."""
