"""Blending generated faces back into the frames, with the reference's exact kernels."""
