"""The data contract between `data/` and every stage.

Layout of `data/` (raw, immutable, tracked by data.dvc; written by `driftkeel demo-data` or by users):

    data/stream/batch_000.jsonl ...   one JUDGEMENT per line (several annotators judge one comparison)
    data/golden.jsonl                 gold labels of golden comparisons (used for annotator calibration)
    data/annotators.jsonl             known annotator ids
    data/sft/demos.jsonl              SFT demonstrations
    data/pool/pool.jsonl              unlabeled candidate pairs for active learning
    data/eval/pairs.jsonl             held-out labelled pairs (slice "pre" = old concept, "post" = current)
    data/eval/prompts.jsonl           held-out prompts for policy evaluation
    data/ground_truth/                simulator truth; ONLY tests and benchmarks read it, never the pipeline
"""
from __future__ import annotations

LABELS = ("a", "b", "tie")

# One judgement of one comparison by one annotator.
JUDGEMENT_COLUMNS: dict[str, str] = {
    "judgement_id": "str",      # unique per row
    "comparison_id": "str",     # shared by all judgements of the same (prompt, response_a, response_b)
    "batch": "int",             # time-ordered batch index, 0-based
    "timestamp": "str",         # ISO 8601, UTC
    "prompt_id": "str",
    "prompt": "str",
    "response_a": "str",
    "response_b": "str",
    "policy_version": "str",    # policy that generated the responses
    "annotator_id": "str",
    "label": "str",             # one of LABELS
    "response_time_s": "float", # seconds the annotator took
    "is_golden": "bool",        # golden comparison (gold label in data/golden.jsonl)
}

GOLDEN_COLUMNS = {"comparison_id": "str", "gold_label": "str"}
ANNOTATOR_COLUMNS = {"annotator_id": "str", "first_batch": "int"}
DEMO_COLUMNS = {"prompt_id": "str", "prompt": "str", "response": "str"}
POOL_COLUMNS = {
    "pair_id": "str", "prompt_id": "str", "prompt": "str",
    "response_a": "str", "response_b": "str", "batch": "int", "policy_version": "str",
}
EVAL_PAIR_COLUMNS = {
    "pair_id": "str", "prompt": "str", "chosen": "str", "rejected": "str",
    "slice": "str",             # "pre" (concept before the drift point) or "post" (current concept)
    "topic": "str",
}
EVAL_PROMPT_COLUMNS = {"prompt_id": "str", "prompt": "str", "slice": "str", "topic": "str"}

# Consensus per comparison, written by the aggregate stage (outputs/aggregate/consensus.parquet).
CONSENSUS_COLUMNS = {
    "comparison_id": "str", "batch": "int", "timestamp": "str", "prompt_id": "str", "prompt": "str",
    "response_a": "str", "response_b": "str", "policy_version": "str", "is_golden": "bool",
    "label": "str",             # a | b | tie
    "confidence": "float",      # probability of the consensus label, in [0, 1]
    "n_judgements": "int",
    "agreement": "float",       # share of judgements equal to the consensus label
}

# Preference pairs handed to trainers (outputs/mix/...): chosen/rejected text with a weight.
PAIR_COLUMNS = {"pair_id": "str", "prompt": "str", "chosen": "str", "rejected": "str",
                "weight": "float", "batch": "int", "source": "str"}


def instants(timestamps):
    """The `timestamp` column as UTC instants (pandas datetimes; no offset = UTC, as validation reads it;
    NaT when a value does not parse). Sort by this, never by the strings: validation accepts UTC offsets
    and a space separator, so "2026-01-02T09:00:00+09:00" is earlier than "2026-01-02T05:00:00Z"."""
    import pandas as pd

    return pd.to_datetime(pd.Series(timestamps), utc=True, errors="coerce", format="ISO8601")


def sort_in_time(frame, by: list[str]):
    """`frame` sorted (stable) by the columns `by`, with "timestamp" compared as UTC instants (see
    instants), not as strings."""
    cols = ["_instant" if c == "timestamp" else c for c in by]
    return (frame.assign(_instant=instants(frame["timestamp"]).to_numpy())
            .sort_values(cols, kind="stable").drop(columns="_instant"))


def stream_files(data_dir) -> list:
    """The stream batch files in time order: by the number in `batch_<N>.jsonl` (batch_999 before
    batch_1000; equal numbers by name); any other `batch_*.jsonl` name after them, by name."""
    import re
    from pathlib import Path

    def order(p):
        m = re.fullmatch(r"batch_(\d+)\.jsonl", p.name)
        return (0, int(m.group(1)), p.name) if m else (1, 0, p.name)

    return sorted(Path(data_dir, "stream").glob("batch_*.jsonl"), key=order)
