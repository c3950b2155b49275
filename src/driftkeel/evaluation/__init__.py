"""Reward-model and policy metrics on held-out data, and the promotion gate."""
