"""Wire protocol, typed topic messages, publisher, subscriber, CURVE, endpoints."""
