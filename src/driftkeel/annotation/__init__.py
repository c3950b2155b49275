"""Aggregation of judgements: consensus labels, agreement, annotator calibration, expert-review routing."""
from driftkeel.annotation.aggregate import AGREEMENT_COLUMNS, AggregationResult, aggregate_judgements
from driftkeel.annotation.agreement import count_matrix, fleiss_kappa, krippendorff_alpha_nominal
from driftkeel.annotation.annotators import ANNOTATOR_COLUMNS, annotator_table
from driftkeel.annotation.consensus import consensus

__all__ = ["AGREEMENT_COLUMNS", "ANNOTATOR_COLUMNS", "AggregationResult", "aggregate_judgements",
           "annotator_table", "consensus", "count_matrix", "fleiss_kappa", "krippendorff_alpha_nominal"]
