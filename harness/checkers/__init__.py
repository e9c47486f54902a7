"""Pure checkers over a recorded history: each returns {"valid": True | False | "unknown", "anomalies", ...}."""
from harness.checkers.independent import DEFAULT_PROMISES, STRICT_PROMISES, check_soak, compose

__all__ = ["DEFAULT_PROMISES", "STRICT_PROMISES", "check_soak", "compose"]
