"""One drift check: a reference window vs a current window of rows, every detector, one family.

Columns read from each window (all optional except a prompt):
- `prompt` or `text`: the prompt (rows whose prompt is not a non-empty string are skipped and counted);
- `prompt_id`: identifies a prompt (default: its text); prompts are deduplicated by it;
- `response`, or `response_a` and `response_b`: the responses (output drift);
- `label` (a | b | tie), `confidence`, `agreement`: consensus labels from the aggregate stage;
- `reward`, or `reward_a` and `reward_b`: reward-model scores of the responses, when the user has them
  (otherwise a surrogate Bradley-Terry reward ensemble is fitted on half of the reference labels);
- `perplexity`: the policy's perplexity on the prompt.

Tests that lack their inputs are reported as "insufficient data" with the reason; the ones that ran
are calibrated together (driftkeel.drift.calibration) at `params.alpha`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from driftkeel.config import DriftParams
from driftkeel.drift import detectors as det
from driftkeel.drift import feedback as fb
from driftkeel.drift.calibration import calibrate, effective_permutations
from driftkeel.embeddings import Embedder

TESTS = (("prompt_embedding", "prompt"), ("output_text_stats", "output"), ("output_embedding", "output"),
         ("perplexity_ks", "perplexity"), ("label_agreement_mwu", "label"), ("label_flip_rate", "label"),
         ("reward_score_ks", "reward"), ("reward_margin_ks", "reward"), ("reward_ensemble_disagreement", "reward"),
         ("reward_accuracy_drop", "reward"), ("reward_mcnemar", "reward"), ("length_preference_fisher", "concept"))


def _is_text(x) -> bool:
    return isinstance(x, str) and bool(x.strip())


@dataclass
class Window:
    prompts: list[str] = field(default_factory=list)       # distinct prompts with text
    n_rows: int = 0
    n_without_text: int = 0
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)   # rows with prompt + both responses
    responses: list[str] = field(default_factory=list)
    agreement: np.ndarray = field(default_factory=lambda: np.zeros(0))
    user_reward: np.ndarray | None = None                  # per row (`reward`), or per pair: mean of reward_a, reward_b
    user_margin: np.ndarray | None = None                  # chosen - rejected, when given with labels
    perplexity: np.ndarray = field(default_factory=lambda: np.zeros(0))


def window_from_rows(rows: pd.DataFrame | list[dict]) -> Window:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    w = Window(n_rows=len(df))
    if len(df) == 0:
        return w
    if "prompt" not in df.columns and "text" in df.columns:
        df = df.rename(columns={"text": "prompt"})
    if "prompt" not in df.columns:
        w.n_without_text = len(df)
        return w
    ok = df["prompt"].map(_is_text).astype(bool)     # astype: an empty map is str-typed under pandas 3
    w.n_without_text = int((~ok).sum())
    df = df[ok].copy()
    if "prompt_id" in df.columns:   # a row without an id is identified by its text (not all by "nan")
        pid = df["prompt_id"]
        given = pid.notna() & (pid.astype(str).str.strip() != "")
        df["prompt_id"] = pid.astype(str).where(given, df["prompt"])
    else:
        df["prompt_id"] = df["prompt"]
    w.prompts = df.drop_duplicates("prompt_id")["prompt"].tolist()
    if "perplexity" in df.columns:
        w.perplexity = pd.to_numeric(df.drop_duplicates("prompt_id")["perplexity"], errors="coerce").to_numpy(float)
    resp_cols = [c for c in ("response", "response_a", "response_b") if c in df.columns]
    w.responses = [r for c in resp_cols for r in df[c].tolist() if _is_text(r)]
    if {"response_a", "response_b"} <= set(df.columns):
        both = df["response_a"].map(_is_text).astype(bool) & df["response_b"].map(_is_text).astype(bool)
        w.comparisons = df[both].reset_index(drop=True)
    if "agreement" in df.columns:
        w.agreement = pd.to_numeric(df["agreement"], errors="coerce").to_numpy(float)
    if "reward" in df.columns:
        w.user_reward = pd.to_numeric(df["reward"], errors="coerce").to_numpy(float)
    elif {"reward_a", "reward_b"} <= set(df.columns):
        ra = pd.to_numeric(df["reward_a"], errors="coerce").to_numpy(float)
        rb = pd.to_numeric(df["reward_b"], errors="coerce").to_numpy(float)
        w.user_reward = (ra + rb) / 2     # one value per pair: a pair's two scores share its prompt
        if "label" in df.columns:
            lab = df["label"].to_numpy()
            m = np.where(lab == "a", ra - rb, np.where(lab == "b", rb - ra, np.nan))
            w.user_margin = m[np.isfinite(m)]
    return w


def _labelled(comp: pd.DataFrame) -> pd.DataFrame:
    if comp.empty or "label" not in comp.columns:
        return comp.iloc[0:0]
    lab = comp[comp["label"].isin(["a", "b"])].reset_index(drop=True)
    return lab


def _pair_embeddings(embedder: Embedder, comp: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    from driftkeel.active.surrogate import pair_text

    n = len(comp)
    if n == 0:
        return np.zeros((0, embedder.dim)), np.zeros((0, embedder.dim))
    texts = [pair_text(p, a) for p, a in zip(comp["prompt"], comp["response_a"])]
    texts += [pair_text(p, b) for p, b in zip(comp["prompt"], comp["response_b"])]
    e = embedder.encode(texts).astype(np.float64)
    return e[:n], e[n:]


def _split_groups(groups: np.ndarray, seed: int) -> np.ndarray:
    """Boolean mask of the 'fit' half, whole prompt groups on one side."""
    uniq = np.array(sorted(set(groups.tolist())))
    pick = set(uniq[np.random.default_rng(seed).permutation(len(uniq))[: len(uniq) // 2]].tolist())
    return np.array([g in pick for g in groups])


def reward_tests(ref: Window, cur: Window, params: DriftParams, pair_embedder: Embedder, seed: int) -> list[dict]:
    """Reward-model score, margin, disagreement and accuracy drift, and the McNemar test."""
    mw = params.min_window
    names = ("reward_score_ks", "reward_margin_ks", "reward_ensemble_disagreement", "reward_accuracy_drop",
             "reward_mcnemar")
    if ref.user_reward is not None and cur.user_reward is not None:
        out = [fb.reward_score_drift(ref.user_reward, cur.user_reward, min_window=mw)]
        if ref.user_margin is not None and cur.user_margin is not None:
            out.append(fb.reward_score_drift(ref.user_margin, cur.user_margin, min_window=mw,
                                             test="reward_margin_ks", what="reward margins"))
        return out
    from driftkeel.active.surrogate import BradleyTerrySurrogate

    rl, cl = _labelled(ref.comparisons), _labelled(cur.comparisons)
    if len(rl) < 2 * mw or len(cl) < mw or rl["label"].nunique() < 2:
        why = (f"needs reward scores (reward / reward_a, reward_b) or at least {2 * mw} labelled reference pairs "
               f"and labelled current pairs (reference {len(rl)}, current {len(cl)})")
        return [det.insufficient(t, "reward", why, len(rl), len(cl)) for t in names]
    Ra, Rb = _pair_embeddings(pair_embedder, rl)
    Ca, Cb = _pair_embeddings(pair_embedder, cl)
    ry, cy = (rl["label"] == "a").to_numpy(int), (cl["label"] == "a").to_numpy(int)
    rw = pd.to_numeric(rl.get("confidence", pd.Series(np.ones(len(rl)))), errors="coerce").fillna(1.0).to_numpy(float)
    cw = pd.to_numeric(cl.get("confidence", pd.Series(np.ones(len(cl)))), errors="coerce").fillna(1.0).to_numpy(float)
    fit = _split_groups(rl["prompt_id"].astype(str).to_numpy(), seed)
    hold = ~fit
    if len(set(ry[fit].tolist())) < 2:
        return [det.insufficient(t, "reward", "the reference half used to fit has a single label", len(rl), len(cl))
                for t in names]
    model = BradleyTerrySurrogate(n_members=params.reward_ensemble, seed=seed).fit(Ra[fit] - Rb[fit], ry[fit], rw[fit])
    W = np.stack([m.coef_.ravel() for m in model.members])            # (members, d)

    def scores(Ea, Eb):
        sa, sb = Ea @ W.T, Eb @ W.T                                   # (n, members)
        # spread: one value per pair (the two responses of a pair share its prompt, so their values are
        # correlated: treated as independent, the tests alarmed ~3x too often under no drift)
        return sa.mean(axis=1), sb.mean(axis=1), (sa.std(axis=1) + sb.std(axis=1)) / 2

    ha, hb, h_spread = scores(Ra[hold], Rb[hold])
    qa, qb, q_spread = scores(Ca, Cb)
    hy = ry[hold]
    h_margin, q_margin = np.where(hy == 1, ha - hb, hb - ha), np.where(cy == 1, qa - qb, qb - qa)
    out = [fb.reward_score_drift((ha + hb) / 2, (qa + qb) / 2, min_window=mw),      # per pair, as the spread
           fb.reward_score_drift(h_margin, q_margin, min_window=mw, test="reward_margin_ks", what="reward margins")]
    if params.reward_ensemble > 1:
        out.append(fb.reward_disagreement_drift(h_spread, q_spread, min_window=mw))
    out.append(fb.reward_accuracy_drift(h_margin > 0, q_margin > 0, min_window=mw))
    out.append(fb.reward_drift(Ra - Rb, ry, rw, Ca - Cb, cy, cw, cl["prompt_id"].astype(str).to_numpy(),
                               min_window=mw, seed=seed))
    for r in out[:-1]:
        r["details"]["reward_model"] = (f"surrogate Bradley-Terry ensemble of {params.reward_ensemble} on "
                                        f"{pair_embedder.backend} features, fitted on {int(fit.sum())} reference pairs; "
                                        f"compared: the other {int(hold.sum())} reference pairs vs the current window")
    return out


def _length_gap(comp: pd.DataFrame) -> np.ndarray:
    lab = _labelled(comp)
    if lab.empty:
        return np.zeros(0)
    la = lab["response_a"].map(lambda t: len(str(t).split())).to_numpy(float)
    lb = lab["response_b"].map(lambda t: len(str(t).split())).to_numpy(float)
    return np.where((lab["label"] == "a").to_numpy(), la - lb, lb - la)


def _n_signals_with_data(ref: Window, cur: Window, params: DriftParams, flips) -> int:
    s = 1  # prompt
    s += bool(ref.responses or cur.responses)
    s += bool(len(ref.perplexity) or len(cur.perplexity))
    s += bool(len(ref.agreement) or flips is not None)
    s += bool(not ref.comparisons.empty or ref.user_reward is not None) * 2   # reward, concept
    return s


def check_windows(ref: Window, cur: Window, params: DriftParams, embedder: Embedder, *,
                  pair_embedder: Embedder | None = None, output_embedder: Embedder | None = None, seed: int = 0,
                  flips: dict | None = None, ref_kripp: list[float] | None = None,
                  cur_kripp: float | None = None) -> tuple[list[dict], dict]:
    """All detectors on (ref, cur), calibrated together. Returns (tests, plot_data).

    flips: {"reference": (flipped, re-judged), "current": (flipped, re-judged)} from the aggregate stage.
    """
    mw, mx = params.min_window, params.max_window
    S = _n_signals_with_data(ref, cur, params, flips)
    b_prompt = effective_permutations(params.n_permutations, params.alpha, S)
    tests: list[dict] = []
    # prompts
    ri = det.subsample_index(len(ref.prompts), max(mx, 1), seed)
    ci = det.subsample_index(len(cur.prompts), max(mx, 1), seed + 1)
    ref_p, cur_p = [ref.prompts[i] for i in ri], [cur.prompts[i] for i in ci]
    ref_e, cur_e = embedder.encode(ref_p), embedder.encode(cur_p)
    tests.append(det.prompt_drift(ref_e, cur_e, min_window=mw, max_window=mx, n_permutations=b_prompt, seed=seed,
                                  alpha=params.alpha, ref_texts=ref_p, cur_texts=cur_p, clusters=params.clusters,
                                  topics=params.topics > 0, n_topics=max(params.topics, 2)))
    # outputs
    if ref.responses or cur.responses:
        # min_window counts rows (pairs), not responses: a pair brings two
        mw_out = mw * (2 if not (ref.comparisons.empty and cur.comparisons.empty) else 1)
        tests.append(det.output_text_drift(ref.responses, cur.responses, min_window=mw_out))
        if params.output_features != "none" and output_embedder is not None:
            rr = [ref.responses[i] for i in det.subsample_index(len(ref.responses), mx, seed + 2)]
            cr = [cur.responses[i] for i in det.subsample_index(len(cur.responses), mx, seed + 3)]
            tests.append(det.output_embedding_drift(
                output_embedder.encode(rr), output_embedder.encode(cr), min_window=mw_out, max_window=mx,
                n_permutations=effective_permutations(params.n_permutations, params.alpha, 2 * S), seed=seed + 4,
                alpha=params.alpha))
    else:
        tests.append(det.insufficient("output_text_stats", "output", "no responses in either window"))
    # perplexity
    if len(ref.perplexity) or len(cur.perplexity):
        tests.append(det.perplexity_drift(ref.perplexity, cur.perplexity, min_window=mw))
    else:
        tests.append(det.insufficient("perplexity_ks", "perplexity",
                                      "no perplexities (set drift.perplexity_model or give a `perplexity` column)"))
    # labels
    tests.append(fb.label_drift(ref.agreement, cur.agreement, min_window=mw, ref_alpha=ref_kripp, cur_alpha=cur_kripp))
    if flips is not None:
        (rf, rn), (cf, cn) = flips["reference"], flips["current"]
        tests.append(fb.flip_rate_drift(rf, rn, cf, cn, min_window=mw))
    # reward model and concept
    tests += reward_tests(ref, cur, params, pair_embedder or embedder, seed)
    tests.append(fb.length_preference_drift(_length_gap(ref.comparisons), _length_gap(cur.comparisons), min_window=mw))
    calibrate(tests, params.alpha)
    ref_len = det.response_stats(ref.responses)["words"]
    cur_len = det.response_stats(cur.responses)["words"]
    plot_data = {"ref_lengths": ref_len, "cur_lengths": cur_len, "ref_emb": ref_e, "cur_emb": cur_e}
    return tests, plot_data


def window_status(tests: list[dict]) -> str:
    ran = [t for t in tests if t["status"] in (det.OK, det.ALARM)]
    return det.INSUFFICIENT if not ran else (det.ALARM if any(t["alarm"] for t in ran) else det.OK)
