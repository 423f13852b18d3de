"""Pozytywka ML: the machine-learning system of the Pozytywka music streaming service."""

__version__ = "0.1.0"
