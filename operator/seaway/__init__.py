"""Seaway: a Kubernetes operator that takes scikit-learn models to production."""

__version__ = "0.1.0"
