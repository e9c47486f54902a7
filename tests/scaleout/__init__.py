"""Tests of sharded runs' pure half: the shard plan (harness/shard_plan.py) and merge-reports."""
