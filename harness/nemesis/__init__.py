"""The kit's fault protocol (protocol.py: kinds, registry, apply -> verify/heal), its kinds (kinds_*.py), the
player, generator and shrinker, the Toxiproxy steering and the probes. The package imports nothing: the Apiary
suite's per-scenario facade over it is apiary_suite/scenario_faults.Nemesis."""
