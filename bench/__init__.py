"""``python -m bench``: the booking saga's benchmark. See docs/benchmarks.md."""
