"""The runner's console: one line of output, flushed at once (the suite's hooks print through it too)."""


def say(msg: str) -> None:
    """One line of the runner's output."""
    print(msg, flush=True)
