"""Tests of the harness: runner, cluster helpers, reports, gate, waits."""
