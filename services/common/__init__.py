"""Runtime shared by every service: settings, NATS bus, logging, lifecycle, reconnect policy."""
