"""Verifiable reward functions for rlbal (importable on their own)."""
