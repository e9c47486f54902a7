"""Mock inference worker: registers with a hive, streams deterministic tokens from an engine subprocess, fault knobs."""
