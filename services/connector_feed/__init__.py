"""connector_feed: exchange connectors -> normalised contracts -> NATS ``md.<SYMBOL>.*``."""
