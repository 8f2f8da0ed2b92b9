"""Reading and writing frames, video and audio files, and spilling per-frame material to disk."""
