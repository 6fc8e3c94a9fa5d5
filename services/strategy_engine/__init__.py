"""strategy_engine: strategies on md.<SYMBOL>.* -> signals.<strategy>.<SYMBOL>."""
