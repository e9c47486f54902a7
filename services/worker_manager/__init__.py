"""Worker-manager ("hive"): registers with the orchestrator, manages local workers, relays jobs, provisions models."""
