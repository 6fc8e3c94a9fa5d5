"""The Binance connector (spot and USD-M futures): transport, pure parsing and the local order book."""
