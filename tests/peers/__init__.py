"""Loopback servers that speak the outside networks' protocols, for tests."""
