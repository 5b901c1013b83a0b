"""The suite's tiny data, models and contexts, which live in :mod:`stakes_core.testing` (public, so
plugin authors test the same way); the tests import them from here or from there."""

from stakes_core.testing import tiny_context, tiny_dataset, tiny_model

__all__ = ["tiny_context", "tiny_dataset", "tiny_model"]
