"""Container HEALTHCHECK for an etcd member: exit 0 when GET /health on 127.0.0.1:<port> answers 200 with
{"health": "true"} (etcd answers 503 while the member sees no leader). Port: the first argument, else 2379."""
import json
import sys
import urllib.request

port = int(sys.argv[1]) if len(sys.argv) > 1 else 2379
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
        healthy = reply.status == 200 and json.loads(reply.read()).get("health") == "true"
except (OSError, ValueError) as exc:
    sys.stderr.write(f"etcd health: {exc}\n")
    sys.exit(1)
sys.exit(0 if healthy else 1)
