"""hedgeflow: multi-agent trading research and signalling (pure domain core).

The core imports neither Prefect nor DuckDB; see DESIGN.md (Layout).
"""

__version__ = "0.1.0"
