"""Tests of the fault protocol (harness/nemesis/protocol.py), its kinds and the fault player."""
