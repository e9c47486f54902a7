"""Tests of the orchestrator service."""
