"""Faces: detection, landmarks, crop boxes, parsing masks, and the per-video face material."""
