"""MuseTalk as a library: the whole lip-sync pipeline with no ComfyUI import anywhere in it."""

__version__ = "0.1.0"
