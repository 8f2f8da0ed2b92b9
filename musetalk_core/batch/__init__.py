"""Batch jobs and cluster runs (issue 16): JOBS.jsonl in, one output per job; in this process or on Ray."""
