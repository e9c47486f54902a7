"""Tests of services.transport (no Docker)."""
