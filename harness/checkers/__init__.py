"""Pure checkers over a recorded history: each returns {"valid": True | False | "unknown", "anomalies", ...}.
The kit's are linearizable (+ its helpers); independent is the Apiary suite's. Import the module you need:
this package imports nothing, so the kit's checker does not drag the suite's in."""
