"""Runnable ZeroMQ and pipe examples: `python -m examples.run examples/<name>.yaml`."""
