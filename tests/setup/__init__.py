"""Set-up: the dependency lock files and the harness venv made from them."""
