"""Data: schemas, loaders and the drifting-stream simulator."""
