"""Weight files: where each lives, reading them safely, loading the networks, downloading."""
