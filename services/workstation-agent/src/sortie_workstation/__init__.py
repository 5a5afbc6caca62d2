"""Sortie's workstation agent: one per machine; reports and ends the sessions open on it."""

__version__ = "0.1.0"
