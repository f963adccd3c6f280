"""The engine: the scheduler (the only writer of instance state), executors, output capture."""
