"""System tests: the real processes (dev server, provider service, worker, web app, CLIs) together."""
