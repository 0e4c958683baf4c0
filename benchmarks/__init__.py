"""Benchmarks of ignite-pseudolabel. Run them as modules from the repository root, e.g.
``python -m benchmarks.accuracy``; :mod:`benchmarks.common` holds their shared helpers."""
