"""Tests of the pure chaos pieces: schedule generator, shrinker, timeline plot."""
