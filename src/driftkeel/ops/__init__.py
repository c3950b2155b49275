"""Operations around the pipeline: new-data pickup and versioning (inbox), status, sharded scale-out."""
