"""Hostile-client regression suite (issue #14): every attack found from outside stays fixed."""
