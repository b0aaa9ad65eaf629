"""soakq: soak-test orchestrator for a market-making bot's runtime parameters."""

__version__ = "0.1.0"
