"""Helpers the tests share (real services they start and stop themselves)."""
