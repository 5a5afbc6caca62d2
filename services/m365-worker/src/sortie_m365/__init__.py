"""Sortie's Microsoft 365 worker."""

__version__ = "0.1.0"
