"""rwkvfast-server's parts: app (HTTP endpoints), engine (the batching scheduler), state_cache."""
