"""Curriculum: preference pairs from consensus, replay mixing, group split, easy-to-hard order."""
from driftkeel.curriculum.mixing import (PAIR_FIELDS, Mix, build_mix, group_split, order_easy_to_hard,
                                         replay_size, to_pairs)

__all__ = ["PAIR_FIELDS", "Mix", "build_mix", "group_split", "order_easy_to_hard", "replay_size", "to_pairs"]
