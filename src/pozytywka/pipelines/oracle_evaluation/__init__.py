"""oracle_evaluation: the generator's hidden truth as scorers, beside the trained models."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
