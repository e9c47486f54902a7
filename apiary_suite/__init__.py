"""The Apiary suite adapter: what the kit (harness/) needs to test this stack. The API client, the event
subscriber, AMDP probes and rogue peers, the world, the suite's checks, its soaks and its own fault kinds.
Importing any module of it registers the suite's fault kinds (kinds_*.py here) with the kit's registry."""
from harness.nemesis.protocol import load_kinds

load_kinds(__name__)
