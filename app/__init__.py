"""Hashroom: follow a hashtag chat live."""
