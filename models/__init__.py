"""Runnable reproductions built on plasticity (the library never imports from here)."""
