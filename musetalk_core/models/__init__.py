"""Network definitions that load the published checkpoints unchanged (one module per network)."""
