"""Drift check between two arbitrary JSONL files (`driftkeel drift --reference A.jsonl --current B.jsonl`).

Each line needs a `prompt` or `text` field; an optional `response` field enables the output-length
test. Lines that are not JSON objects or lack text are skipped and counted. Two tests, calibrated
together (Bonferroni at `drift.alpha`): prompt MMD on MiniLM embeddings, and response-length KS.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from driftkeel.config import DriftParams
from driftkeel.drift import detectors as det
from driftkeel.drift.decision import decide
from driftkeel.drift.report import write_outputs
from driftkeel.embeddings import Embedder


def read_rows(path: str | Path) -> tuple[list[dict], dict]:
    """Lenient JSONL reader for user files: returns (rows, counts of skipped lines by reason)."""
    rows, skipped = [], {"invalid_json": 0, "not_an_object": 0}
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                skipped["invalid_json"] += 1
                continue
            if not isinstance(obj, dict):
                skipped["not_an_object"] += 1
                continue
            rows.append(obj)
    return rows, skipped


def _texts(rows: list[dict]) -> tuple[list[str], list[str], int]:
    texts, responses, missing = [], [], 0
    for r in rows:
        t = r.get("prompt", r.get("text"))
        if not isinstance(t, str) or not t.strip():
            missing += 1
            continue
        texts.append(t)
        resp = r.get("response")
        if isinstance(resp, str):
            responses.append(resp)
    return texts, responses, missing


def _drift_check(reference_rows: list[dict], current_rows: list[dict], params: DriftParams,
                 embedder: Embedder | None = None, seed: int = 0) -> tuple[dict, dict]:
    embedder = embedder or Embedder.for_project(os.environ.get("DRIFTKEEL_ROOT", "."))
    ref_t, ref_r, ref_missing = _texts(reference_rows)
    cur_t, cur_r, cur_missing = _texts(current_rows)
    ref_e, cur_e = embedder.encode(ref_t), embedder.encode(cur_t)
    n_perm = det.effective_permutations(params.n_permutations, params.alpha, 2)
    tests = [det.prompt_drift(ref_e, cur_e, min_window=params.min_window, max_window=params.max_window,
                              n_permutations=n_perm, seed=seed)]
    ref_len, cur_len = det.response_lengths(ref_r), det.response_lengths(cur_r)
    if ref_r or cur_r:
        tests.append(det.output_drift(ref_len, cur_len, min_window=params.min_window))
    det.calibrate(tests, params.alpha)
    ran = [t for t in tests if t["status"] in (det.OK, det.ALARM)]
    status = det.INSUFFICIENT if not ran else (det.ALARM if any(t["alarm"] for t in ran) else det.OK)
    report = {
        "status": status, "current_batch": None, "reference_batches": None, "batches": None,
        "calibration": {"family_alpha": params.alpha, "correction": "bonferroni",
                        "scope": "the tests run on reference vs current",
                        "per_test_alpha_current": next((t["alpha"] for t in tests if t["alpha"]), None)},
        "tests": tests, "history": [],
        "decision": decide(tests, params.decision),
        "inputs": {"n_reference": len(reference_rows), "n_current": len(current_rows),
                   "reference_rows_without_text": ref_missing, "current_rows_without_text": cur_missing,
                   "reference_responses": len(ref_r), "current_responses": len(cur_r)},
        "embedding_backend": embedder.backend, "params": params.model_dump(),
    }
    plot_data = {"ref_lengths": ref_len, "cur_lengths": cur_len, "ref_emb": ref_e, "cur_emb": cur_e,
                 "agreement": None, "mean_agreement": {}}
    return report, plot_data


def drift_check(reference_rows: list[dict], current_rows: list[dict], params: DriftParams,
                embedder: Embedder | None = None, seed: int = 0) -> dict:
    """Drift report (JSON-ready dict) of `current_rows` against `reference_rows`."""
    return _drift_check(reference_rows, current_rows, params, embedder, seed)[0]


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


__all__ = ["drift_check", "read_rows", "run_drift_cli"]
