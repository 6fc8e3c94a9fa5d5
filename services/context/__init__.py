"""context: rolling market history per symbol, answered on context.<SYMBOL>.snapshot."""
