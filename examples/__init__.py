"""Workflows that adopt the generic saga core without any of the booking code."""
