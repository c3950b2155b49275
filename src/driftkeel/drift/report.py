"""Drift report rendering: flat metrics, the history table and a self-contained HTML page.

The HTML embeds every figure as a base64 PNG (matplotlib, Agg backend): one file, no external assets.
"""
from __future__ import annotations

import base64
import html
import io
import json

import numpy as np
import pandas as pd


# ----------------------------------------------------------------------------- flat metrics
def flat_metrics(report: dict) -> dict:
    """Scalars for outputs/drift/metrics.json and MLflow (booleans as 0/1, missing as None): per signal
    `<signal>_p_value` (smallest p of its tests that ran), `<signal>_alarm`, `<signal>_alpha`; per test
    `<test>_p_value`, `<test>_statistic` and its numeric details."""
    out: dict = {"current_batch": report.get("current_batch"),
                 "decision_level": report["decision"]["level"],
                 "n_alarms": report["decision"]["n_alarms"],
                 "insufficient_data": int(report["status"] == "insufficient data"),
                 "alpha_family": report["calibration"]["family_alpha"],
                 "alpha_per_test": report["calibration"]["per_test_alpha_current"]}
    by_signal: dict[str, list[dict]] = {}
    for t in report["tests"]:
        by_signal.setdefault(t["signal"], []).append(t)
        name = t["test"]
        out[f"{name}_p_value"] = t["p_value"]
        out[f"{name}_statistic"] = t["statistic"] if isinstance(t["statistic"], (int, float)) else None
        for k, v in t["details"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"{name}_{k}"] = v
    for s, ts in by_signal.items():
        ran = [t for t in ts if t["status"] in ("ok", "alarm") and t["p_value"] is not None]
        out[f"{s}_p_value"] = min(t["p_value"] for t in ran) if ran else None
        out[f"{s}_alarm"] = int(any(t["alarm"] for t in ts))
        out[f"{s}_alpha"] = min(t["alpha"] for t in ran) if ran else None
    hist = [h for h in report.get("history", []) if not h.get("in_reference")]
    if hist:
        out["n_batches_prompt_alarm"] = int(sum(bool(h["alarm"]) for h in hist))
        out["n_batches_any_alarm"] = int(sum(h["n_alarms"] > 0 for h in hist))
    ref = [h for h in report.get("history", []) if h.get("in_reference")]
    if ref:
        out["n_reference_false_alarms"] = int(sum(h["n_alarms"] for h in ref))
    return out


def history_frame(report: dict) -> pd.DataFrame:
    return pd.DataFrame(report.get("history", []))


# ----------------------------------------------------------------------------- figures
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fig_history(report: dict) -> str | None:
    hist = history_frame(report)
    if hist.empty or hist["p_value"].isna().all():
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
    h = hist.dropna(subset=["mmd2"])
    colors = ["tab:red" if a else ("tab:gray" if r else "tab:blue") for a, r in zip(h["alarm"], h["in_reference"])]
    ax1.bar(h["batch"], h["mmd2"], color=colors)
    ax1.set(title="prompt MMD² vs reference (red = alarm, grey = reference LOO)", xlabel="batch", ylabel="MMD²")
    for col, label in (("p_value", "prompt MMD"), ("output_p_value", "output length KS"),
                       ("label_p_value", "label agreement"), ("reward_p_value", "reward McNemar"),
                       ("concept_p_value", "length preference")):
        sub = hist.dropna(subset=[col])
        if len(sub):
            ax2.plot(sub["batch"], np.maximum(sub[col].astype(float), 1e-12), marker="o", label=label)
    a = report["calibration"]["per_test_alpha_current"] or report["calibration"]["family_alpha"]
    ax2.axhline(a, color="k", ls="--", lw=1, label=f"alpha per test = {a:.3g}")
    ax2.set_yscale("log")
    ax2.set(title="p-values per batch", xlabel="batch", ylabel="p-value")
    ax2.legend(fontsize=7)
    return _png(fig)


def fig_lengths(ref: np.ndarray, cur: np.ndarray) -> str | None:
    if len(ref) == 0 and len(cur) == 0:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    both = np.concatenate([ref, cur])
    bins = np.linspace(both.min(), both.max() + 1, 30)
    ax.hist(ref, bins=bins, alpha=0.55, density=True, label=f"reference (n={len(ref)})")
    ax.hist(cur, bins=bins, alpha=0.55, density=True, label=f"current (n={len(cur)})")
    ax.set(title="response length (words)", xlabel="words", ylabel="density")
    ax.legend(fontsize=8)
    return _png(fig)


def fig_agreement(agreement: pd.DataFrame | None, mean_agreement: dict) -> str | None:
    have_table = agreement is not None and len(agreement) > 0
    if not have_table and not mean_agreement:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if have_table:
        for col in ("krippendorff_alpha", "fleiss_kappa", "mean_golden_accuracy"):
            if col in agreement.columns:
                ax.plot(agreement["batch"], agreement[col], marker="o", label=col)
    if mean_agreement:
        ks = sorted(mean_agreement)
        ax.plot(ks, [mean_agreement[k] for k in ks], marker="s", ls=":", label="mean per-comparison agreement")
    ax.set(title="annotator agreement per batch", xlabel="batch")
    ax.legend(fontsize=7)
    return _png(fig)


def pca_2d(ref_emb: np.ndarray, cur_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project both windows on the top-2 principal axes of the pooled sample."""
    Z = np.vstack([ref_emb, cur_emb]).astype(np.float64)
    mu = Z.mean(axis=0)
    _, _, vt = np.linalg.svd(Z - mu, full_matrices=False)
    P = (Z - mu) @ vt[:2].T
    return P[: len(ref_emb)], P[len(ref_emb):]


def fig_pca(ref_emb: np.ndarray, cur_emb: np.ndarray) -> str | None:
    if len(ref_emb) + len(cur_emb) < 3:
        return None
    plt = _plt()
    a, b = pca_2d(ref_emb, cur_emb)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(a[:, 0], a[:, 1], s=8, alpha=0.5, label=f"reference (n={len(a)})")
    ax.scatter(b[:, 0], b[:, 1], s=8, alpha=0.5, label=f"current (n={len(b)})")
    ax.set(title="prompt embeddings, 2-D PCA of the pooled sample", xlabel="PC1", ylabel="PC2")
    ax.legend(fontsize=8)
    return _png(fig)


# ----------------------------------------------------------------------------- HTML
def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "–"
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    # wide tables scroll inside their own box instead of stretching the page
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


_NESTED = ("statistics", "clusters", "topics", "per_statistic", "projections")


def _embedding_sections(report: dict) -> list[str]:
    """Per-statistic tables of the embedding tests, the prompt clusters and the LDA topics."""
    parts = []
    for t in report["tests"]:
        st = t["details"].get("statistics")
        if st:
            rows = [{"name": k, **v} for k, v in st.items()]
            parts += [f"<h3>{html.escape(t['test'])}: statistics of its permutation test</h3>",
                      _table(rows, ["name", "statistic", "p_value", "threshold", "null_mean", "null_std"])]
    cl = report.get("clusters")
    if cl and not cl.get("reason"):
        parts += ["<h2>Prompt clusters</h2>",
                  f"<p>k-means ({cl['n_clusters']} clusters) fitted on {cl['n_reference_fit']} reference prompts; "
                  f"held-out reference ({cl['n_reference_held_out']}) vs current ({cl['n_current']}): JS divergence "
                  f"{_fmt(cl['js_divergence_nats'])} nats, chi-square p={_fmt(cl['chi2_p_value'])}. Far from every "
                  f"reference centroid (beyond the held-out {cl['far_quantile']:.0%} quantile): "
                  f"{_fmt(cl['far_share_reference'])} of the reference, {_fmt(cl['far_share_current'])} of the current "
                  f"window (one-sided Fisher p={_fmt(cl['far_p_value'])}).</p>"]
        if cl.get("new_clusters"):
            rows = [{**c, "examples": " | ".join(c["examples"]), "top_words": ", ".join(c["top_words"])}
                    for c in cl["new_clusters"]]
            parts += ["<h3>New clusters (current prompts far from the reference)</h3>",
                      _table(rows, ["size", "share_current", "share_reference", "p_value", "top_words", "examples"])]
        if cl.get("grew"):
            rows = [{**c, "examples": " | ".join(c["examples"]), "top_words": ", ".join(c["top_words"])}
                    for c in cl["grew"]]
            parts += ["<h3>Reference clusters that grew</h3>",
                      _table(rows, ["cluster", "share_reference", "share_current", "change", "p_value_grew",
                                    "top_words", "examples"])]
    tp = report.get("topics")
    if tp and not tp.get("reason"):
        rows = [{**t, "top_words": ", ".join(t["top_words"]), "examples_current": " | ".join(t["examples_current"])}
                for t in tp["topics"]]
        parts += ["<h2>Prompt topics (LDA fitted on the reference)</h2>",
                  f"<p>JS divergence of the mean topic mix: {_fmt(tp['js_divergence_nats'])} nats. Descriptive.</p>",
                  _table(rows, ["topic", "share_reference", "share_current", "change", "top_words", "examples_current"])]
    return parts


def render_html(report: dict, plot_data: dict, title: str = "driftkeel drift report") -> str:
    figs = [("Drift history", fig_history(report)),
            ("Response lengths: reference vs current", fig_lengths(plot_data.get("ref_lengths", np.zeros(0)),
                                                                   plot_data.get("cur_lengths", np.zeros(0)))),
            ("Annotator agreement", fig_agreement(plot_data.get("agreement"), plot_data.get("mean_agreement", {}))),
            ("Prompt embeddings", fig_pca(plot_data.get("ref_emb", np.zeros((0, 2))),
                                          plot_data.get("cur_emb", np.zeros((0, 2)))))]
    d = report["decision"]
    tests = [{**t, "details": json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                          for k, v in t["details"].items() if k not in _NESTED}, default=str)}
             for t in report["tests"]]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Status: <b>{html.escape(report['status'])}</b>; current batch: {_fmt(report.get('current_batch'))};"
        f" reference batches: {html.escape(str(report.get('reference_batches')))};"
        f" embeddings: {html.escape(str(report.get('embedding_backend')))}.</p>",
        f"<h2>Decision: <span class='act'>{html.escape(d['action'])}</span></h2><ul>"
        + "".join(f"<li>{html.escape(r)}</li>" for r in d["reasons"]) + "</ul>",
    ]
    # the plots first (what people look at), the numbers behind them after
    for name, png in figs:
        if png:
            parts.append(f"<figure><h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
                         f"src='data:image/png;base64,{png}'></figure>")
    parts += [
        "<h2>Tests on the current window</h2>",
        f"<p>Calibration: the window's false-alarm rate is {_fmt(report['calibration']['family_alpha'])}, split "
        "equally over the signals that could be tested, then over each signal's tests (Bonferroni); the embedding "
        "tests are permutation tests whose several statistics are combined by min-p over the same permutations. "
        "The <i>alpha</i> column is the false-alarm rate each test (and alarm) was calibrated for.</p>",
        _table(tests, ["signal", "test", "status", "statistic_name", "statistic", "p_value", "alpha",
                       "n_reference", "n_current", "reason", "details"]),
    ]
    parts += _embedding_sections(report)
    if report.get("history"):
        parts += ["<h2>History (each batch vs the reference)</h2>",
                  _table(report["history"], list(report["history"][0].keys()))]
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#f3f3f3;position:sticky;top:0}tbody tr:nth-child(even){background:#fafafa}"
             ".scroll{overflow-x:auto;max-width:100%}figure{margin:0 0 1em 0}"
             ".act{color:#b00}img{max-width:100%;height:auto}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


# ----------------------------------------------------------------------------- files
def write_outputs(out_dir, report: dict, plot_data: dict, title: str = "driftkeel drift report") -> dict:
    """Write report.json, report.html, decision.json, metrics.json and plots/history.csv (atomically)."""
    from pathlib import Path

    from driftkeel.io import write_csv, write_json, write_text

    out_dir = Path(out_dir)
    paths = {"report": out_dir / "report.json", "html": out_dir / "report.html",
             "decision": out_dir / "decision.json", "metrics": out_dir / "metrics.json",
             "history": out_dir / "plots" / "history.csv"}
    metrics = flat_metrics(report)
    write_json(paths["report"], report)
    write_json(paths["decision"], report["decision"])
    write_json(paths["metrics"], metrics)
    hist = history_frame(report)
    if hist.empty:
        hist = pd.DataFrame(columns=["batch", "mmd2", "p_value", "alarm"])
    write_csv(paths["history"], hist)
    write_text(paths["html"], render_html(report, plot_data, title=title))
    return {"paths": paths, "metrics": metrics}
