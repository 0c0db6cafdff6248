"""rwkvfast-server's parts: the engine (batching scheduler) and the prompt-state cache."""
