"""Stage-by-stage speed benchmarks of the MuseTalk pipeline (frames per second), ours against the straightforward
per-frame way the reference works. Run ``python -m benchmarks.run --help``. Nothing here is imported by the pack."""
