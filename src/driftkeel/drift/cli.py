"""Drift check between two arbitrary JSONL files (`driftkeel drift --reference A.jsonl --current B.jsonl`).

Each line needs a `prompt` or `text` field; optional fields (`response` or `response_a`/`response_b`,
`label`, `agreement`, `reward`, `perplexity`, see driftkeel.drift.window) switch on the other
detectors. Lines that are not UTF-8 JSON objects are skipped and counted; rows whose prompt is not a
non-empty string are counted and left out. Every detector that has its inputs runs; they are
calibrated together at `drift.alpha` (see driftkeel.drift.calibration).
"""
from __future__ import annotations

import os
from pathlib import Path

from driftkeel.config import DriftParams
from driftkeel.drift.decision import decide
from driftkeel.drift.report import write_outputs
from driftkeel.drift.window import check_windows, window_from_rows, window_status
from driftkeel.embeddings import HASHING, MINILM, Embedder
from driftkeel.validation.reader import read_json_lines


def read_rows(path: str | Path) -> tuple[list[dict], dict]:
    """Lenient JSONL reader for user files: returns (rows, counts of skipped lines by reason).
    A line that is not UTF-8 is skipped and counted like one that is not JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"drift: no such file: {path}")
    values, bad = read_json_lines(path)
    rows = [v for _, v in values if isinstance(v, dict)]
    return rows, {**bad, "not_an_object": len(values) - len(rows)}


def sibling_embedder(embedder: Embedder, features: str) -> Embedder:
    """`embedder` itself when it has the backend `features` names ("hashing" | "minilm"), else an
    embedder of that backend sharing its cache file."""
    backend = HASHING if features == "hashing" else MINILM
    if embedder.backend == backend:
        return embedder
    return Embedder(cache_path=embedder.cache.path if embedder.cache is not None else None, backend=backend)


def _drift_check(reference_rows: list[dict], current_rows: list[dict], params: DriftParams,
                 embedder: Embedder | None = None, seed: int = 0, output_embedder: Embedder | None = None,
                 pair_embedder: Embedder | None = None) -> tuple[dict, dict]:
    embedder = embedder or Embedder.for_project(os.environ.get("DRIFTKEEL_ROOT", "."))
    if output_embedder is None and params.output_features != "none":
        output_embedder = sibling_embedder(embedder, params.output_features)
    pair_embedder = pair_embedder or sibling_embedder(embedder, params.surrogate_features)
    ref, cur = window_from_rows(reference_rows), window_from_rows(current_rows)
    tests, plots = check_windows(ref, cur, params, embedder, pair_embedder=pair_embedder,
                                 output_embedder=output_embedder, seed=seed)
    prompt_t = tests[0]
    report = {
        "status": window_status(tests), "current_batch": None, "reference_batches": None, "batches": None,
        "calibration": {"family_alpha": params.alpha,
                        "correction": "Bonferroni over the signals that ran, then over each signal's tests; "
                                      "permutation (min-p) calibration inside the embedding tests",
                        "scope": "the tests run on reference vs current",
                        "per_test_alpha_current": prompt_t.get("alpha")},
        "tests": tests, "clusters": prompt_t["details"].pop("clusters", None), "topics": prompt_t["details"].pop("topics", None),
        "history": [],
        "decision": decide(tests, params.decision),
        "inputs": {"n_reference": len(reference_rows), "n_current": len(current_rows),
                   "reference_rows_without_text": ref.n_without_text, "current_rows_without_text": cur.n_without_text,
                   "reference_prompts": len(ref.prompts), "current_prompts": len(cur.prompts),
                   "reference_responses": len(ref.responses), "current_responses": len(cur.responses)},
        "embedding_backend": embedder.backend, "params": params.model_dump(),
    }
    plot_data = {**plots, "agreement": None, "mean_agreement": {}}
    return report, plot_data


def drift_check(reference_rows: list[dict], current_rows: list[dict], params: DriftParams,
                embedder: Embedder | None = None, seed: int = 0, **kw) -> dict:
    """Drift report (JSON-ready dict) of `current_rows` against `reference_rows`."""
    return _drift_check(reference_rows, current_rows, params, embedder, seed, **kw)[0]


def run_drift_cli(reference: Path, current: Path, out_dir: Path, params: DriftParams,
                  embedder: Embedder | None = None, seed: int = 0) -> dict:
    """Read both JSONL files, run :func:`drift_check`, write report.json/.html, decision.json, metrics.json."""
    ref_rows, ref_skipped = read_rows(reference)
    cur_rows, cur_skipped = read_rows(current)
    report, plot_data = _drift_check(ref_rows, cur_rows, params, embedder, seed)
    report["inputs"].update({"reference": str(reference), "current": str(current),
                             "reference_skipped_lines": ref_skipped, "current_skipped_lines": cur_skipped})
    write_outputs(out_dir, report, plot_data, title=f"driftkeel drift: {Path(current).name} vs {Path(reference).name}")
    return report


__all__ = ["drift_check", "read_rows", "run_drift_cli", "sibling_embedder"]
