"""The micro-batch executor, run metrics and background jobs."""
