"""API conformance tests: schemathesis against the local stack."""
