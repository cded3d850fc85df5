"""Proxilion GRC: an AI security proxy."""

__version__ = "0.1.0"
