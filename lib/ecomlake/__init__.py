"""ecomlake: PySpark + Delta Lake batch jobs for e-commerce analytics (bronze -> silver -> gold)."""

__version__ = "0.1.0"
