"""Sortie's ENT worker: logs users out of ENT applications, then ends their CAS session."""

__version__ = "0.1.0"
