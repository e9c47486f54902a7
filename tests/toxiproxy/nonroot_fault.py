"""Run by test_quality_docker as an unprivileged user: one quality fault's cycle on a running stack.

argv[1]: the stack's describe() JSON; argv[2]: the fault as JSON {kind, target, params}. Prints one JSON
line: the uid, whether this process could enter a container's namespace, the steering's `via`, verify()'s
verdict and what heal() left."""
import json
import os
import sys

from apiary_suite.cluster import Cluster
from harness.nemesis.probes import container_pid, in_netns
from harness.nemesis.protocol import lookup


def main() -> int:
    """Apply, verify and heal the fault; print what happened."""
    desc, fault_spec = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    stack = Cluster(desc["run_id"], compose=desc["compose"], image_tag=desc.get("image_tag", "local"))
    entered = in_netns(container_pid(stack, "orchestrator"), lambda: True, 2.0) is True
    fault = lookup(fault_spec["kind"]).apply(stack, fault_spec["target"], **fault_spec["params"])
    try:
        verdict = fault.verify()
    finally:
        left = fault.heal()
    print(json.dumps({"uid": os.geteuid(), "entered_netns": entered, "via": fault.steering.via,
                      "held": verdict["held"], "verdict": verdict, "left": left}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
