"""Container HEALTHCHECK: exit 0 when GET /health on 127.0.0.1:<port> answers 200 (no curl needed).
Port: the first argument, else $APIARY_HTTP_PORT (set by each service image), else 8080."""
import os
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("APIARY_HTTP_PORT") or 8080)
path = sys.argv[2] if len(sys.argv) > 2 else "/health"
try:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        status_line = sock.recv(64).split(b"\r\n", 1)[0]
except OSError as exc:
    sys.stderr.write(f"health: {exc}\n")
    sys.exit(1)
sys.exit(0 if status_line.split(b" ")[1:2] == [b"200"] else 1)
