"""Active learning: surrogate reward ensemble, acquisition functions, drift prior, budgeted batch
selection of pool pairs, labelling-queue export / label import."""
from driftkeel.active.acquisition import (STRATEGIES, acquire, bald, binary_entropy, ensemble_variance,
                                          least_confidence, rank, scores)
from driftkeel.active.batch import DIVERSITY, select_batch
from driftkeel.active.drift_prior import drift_prior, flagged_clusters
from driftkeel.active.export import import_labels, parse_labels, write_exports
from driftkeel.active.selection import Selection, clean_pool, fit_surrogate, read_pool, select
from driftkeel.active.surrogate import BradleyTerrySurrogate, pair_features, pair_text

__all__ = ["DIVERSITY", "STRATEGIES", "BradleyTerrySurrogate", "Selection", "acquire", "bald", "binary_entropy",
           "clean_pool", "drift_prior", "ensemble_variance", "fit_surrogate", "flagged_clusters", "import_labels",
           "least_confidence", "pair_features", "pair_text", "parse_labels", "rank", "read_pool", "scores",
           "select", "select_batch", "write_exports"]
