"""Physical operators: one batch-and-watermark interface, snapshot()/restore() as Arrow."""
