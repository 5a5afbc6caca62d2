"""The orchestrator's adapters: Redis-backed stores and indexes, built in `bootstrap.py`."""
