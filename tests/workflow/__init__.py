"""Workflow tests: workflow code on a Temporal test server, and the replay of recorded histories."""
