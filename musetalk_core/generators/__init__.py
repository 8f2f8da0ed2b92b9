"""Generators: what turns per-video material + audio windows into generated faces."""
