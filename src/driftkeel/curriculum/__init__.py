"""Curriculum: preference pairs from consensus, difficulty, replay mixing, cluster weights, order,
synthetic feedback."""
from driftkeel.curriculum.difficulty import cross_fitted_p_chosen, difficulty, order_rows
from driftkeel.curriculum.mixing import (PAIR_FIELDS, Mix, build_mix, group_split, order_easy_to_hard, replay_share,
                                         replay_size, to_pairs)
from driftkeel.curriculum.synthetic import synthetic_pairs

__all__ = ["PAIR_FIELDS", "Mix", "build_mix", "cross_fitted_p_chosen", "difficulty", "group_split",
           "order_easy_to_hard", "order_rows", "replay_share", "replay_size", "synthetic_pairs", "to_pairs"]
