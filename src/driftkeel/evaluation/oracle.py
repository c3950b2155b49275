"""ORACLE: the simulator's true utility, for evaluation and benchmarks only (never training).

When the project's data is the drifting-stream simulator's (`driftkeel demo-data` writes
`data/ground_truth/truth.json`), every response's true utility is a known function of its text
(`driftkeel.data.simulator.true_utility`). Evaluation then also reports how the challenger and the
baseline policies fare under the truth, not just under the learned reward model — every such metric is
named `true_*` / `oracle_*` and labelled ORACLE in the verdict. With real data there is no oracle: the
metrics are absent and the oracle gate check is skipped. Nothing here reads the ground-truth labels;
only the presence of the folder is checked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

LABEL = ("ORACLE: simulator true utility (data/ground_truth/ present); evaluation only, never used "
         "for training or selection")


def available(data_dir: str | Path) -> bool:
    """True when `data_dir` holds the simulator's ground truth (the demo data)."""
    return (Path(data_dir) / "ground_truth" / "truth.json").is_file()


def concept_of(slice_label: str, old_slice: str) -> str:
    """The simulator concept a slice was labelled under: the old slice -> "pre", others -> "post"."""
    return "pre" if slice_label == old_slice else "post"


def true_utilities(prompts: Sequence[str], responses: Sequence[str], concepts: Sequence[str]) -> np.ndarray:
    """True utility of each (prompt, response) under its concept (float array)."""
    from driftkeel.data.simulator import true_utility

    if not (len(prompts) == len(responses) == len(concepts)):
        raise ValueError("true_utilities: prompts, responses and concepts differ in length")
    return np.array([true_utility(p, r, c) for p, r, c in zip(prompts, responses, concepts)], dtype=float)
