"""Aggregation of judgements: consensus labels, agreement, annotator calibration and health, routing."""
from driftkeel.annotation.aggregate import (AGREEMENT_COLUMNS, CONSENSUS_OUT_COLUMNS, AggregationResult,
                                            aggregate_judgements)
from driftkeel.annotation.agreement import (bootstrap_agreement, count_matrix, fleiss_kappa,
                                            krippendorff_alpha_nominal)
from driftkeel.annotation.annotators import ANNOTATOR_COLUMNS, annotator_table
from driftkeel.annotation.consensus import consensus, ds_consensus
from driftkeel.annotation.dawid_skene import DawidSkeneFit, fit_dawid_skene

__all__ = ["AGREEMENT_COLUMNS", "ANNOTATOR_COLUMNS", "CONSENSUS_OUT_COLUMNS", "AggregationResult", "DawidSkeneFit",
           "aggregate_judgements", "annotator_table", "bootstrap_agreement", "consensus", "count_matrix",
           "ds_consensus", "fit_dawid_skene", "fleiss_kappa", "krippendorff_alpha_nominal"]
