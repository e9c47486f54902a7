"""Tests of the wire protocol and common helpers."""
