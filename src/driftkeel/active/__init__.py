"""Active learning: surrogate reward, acquisition functions, budgeted selection of pool pairs."""
from driftkeel.active.acquisition import STRATEGIES, acquire, least_confidence, rank
from driftkeel.active.selection import Selection, clean_pool, fit_surrogate, read_pool, select
from driftkeel.active.surrogate import BradleyTerrySurrogate, pair_features, pair_text

__all__ = ["STRATEGIES", "BradleyTerrySurrogate", "Selection", "acquire", "clean_pool", "fit_surrogate",
           "least_confidence", "pair_features", "pair_text", "rank", "read_pool", "select"]
