"""Apiary package."""
