"""Numerical operators (block DCT)."""
