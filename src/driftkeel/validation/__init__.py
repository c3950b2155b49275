"""Validation of the raw judgement stream: robust reading, a Great Expectations suite, quarantine."""
from driftkeel.validation.reference import read_annotators, read_golden
from driftkeel.validation.validate import CLEAN_COLUMNS, ValidationResult, validate_stream

__all__ = ["CLEAN_COLUMNS", "ValidationResult", "read_annotators", "read_golden", "validate_stream"]
