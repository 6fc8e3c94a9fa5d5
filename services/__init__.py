"""The market-data services: connector_feed, strategy_engine, context, and their shared runtime."""

__version__ = "0.1.0"
