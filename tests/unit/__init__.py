"""Unit tests: in-process, no Temporal server and no child processes."""
