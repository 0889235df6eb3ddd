"""Developer entry points that start several processes (``make run``)."""
