"""The sortie command line."""
