"""Sources (pull-based, Arrow batches, resumable positions) and sinks."""
