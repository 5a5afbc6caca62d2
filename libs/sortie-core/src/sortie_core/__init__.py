"""Sortie's shared building blocks. Imported by services, never run on its own."""

__version__ = "0.1.0"
