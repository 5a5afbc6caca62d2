"""Sortie orchestrator."""
