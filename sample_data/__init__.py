"""Sample data: a generator of realistic data sets with injected leakage (``generator``), and
``SMALL``, the small generated set committed beside it, which tests and benchmarks import."""

from pathlib import Path

SMALL = Path(__file__).resolve().parent / "small"
