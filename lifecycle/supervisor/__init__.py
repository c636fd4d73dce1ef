"""The supervisor: the reconciler that carries out the planner's actions through the runtimes,
its wake-ups, the cache of each model's planner memory, and the one rule for appending."""
