"""Audio: the per-frame Whisper windows and silence detection."""
