"""User files (params.yaml `data.files`) -> the canonical data/ layout the DVC chain reads.

Sources are taken in the order listed (= time order): each source's stream comparisons form the next
stream batches. What each format becomes (see docs/real-data.md):

- ``pairs`` / ``hh``: split by ``group`` (never by row; a group with an explicit ``split`` -- the first
  used row naming one, sources in order -- goes there whole, its rows without a split included; a later
  source's row naming the other split is quarantined, ``group_in_both_splits``), else a seeded
  ``files.eval_fraction`` of the groups -> data/eval/pairs.jsonl (``slice`` "post" for the last pair
  source, "pre" for earlier ones; a single source: first half of its eval groups "pre", rest "post";
  ``topic`` = domain), a seeded ``files.pool_fraction`` -> data/pool/pool.jsonl (unlabeled), the rest
  -> stream comparisons judged once by the source (annotator id = source name), with a seeded random
  a/b orientation (label "a" when chosen is response_a). Batches: the ``batch`` field when given,
  else timestamp order, else file order, in chunks of ``files.batch_size``. Their (prompt, chosen)
  -> data/sft/demos.jsonl (at most ``files.n_sft_demos``).
- ``annotations``: one comparison per item (prompt = the item's text, responses = the two labels),
  one judgement per worker row (first label -> "a", second -> "b"); gold -> data/golden.jsonl and the
  item's judgements flagged ``is_golden``.
- ``prompts``: data/eval/prompts.jsonl (``slice`` by position: first half "pre"), evenly thinned to
  ``files.n_eval_prompts``: the valid rows thinned out are counted per source as ``rows_not_needed``
  (and not as ``rows_used``); without a prompt source the eval prompts come from the eval pairs.

Quarantines go to data/quarantine/<format>.jsonl, counts to data/prepare_report.json; per source
``rows_in == rows_used + rows_quarantined + rows_not_needed`` (asserted).
Unknown response times are 0.0; timestamps not given are synthetic (:func:`_fill_times`: one week per
batch from 2026-01-05, closer together when the batches would pass 2026-05-25, and never earlier than a real timestamp
of an earlier batch nor later than one of a later batch, so validate finds them neither in the future
nor out of order).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from driftkeel.config import DataParams
from driftkeel.io import install_raw_data
from driftkeel.data.formats import RAW_MAX_CHARS, FormatResult, LOADERS, _parse_ts, explain, load_annotations

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
SYNTHETIC_END = START + timedelta(weeks=20)     # synthetic timestamps: one week per batch, all before this


def _pid(text: str) -> str:
    return "p-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _unit(seed: int, key: str) -> float:
    """A seeded uniform in [0, 1) from a key (stable under reordering and slicing)."""
    h = hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _dump(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def _resolve(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (root / p)


def _source_name(src) -> str:
    return src.name or Path(src.path).name.split(".")[0]


def load_sources(p: DataParams, root: Path) -> list[tuple[object, FormatResult]]:
    out = []
    for src in p.files.sources:
        path = _resolve(root, src.path)
        if not path.exists():
            raise FileNotFoundError(f"data.files.sources: {src.path} not found (resolved to {path})")
        if src.format == "annotations":
            res = load_annotations(path, labels=src.labels, limit=src.limit)
        else:
            res = LOADERS[src.format](path, limit=src.limit)
        out.append((src, res))
    return out


def _ordered(pairs: list[dict]) -> list[dict]:
    if any(r.get("batch") is not None for r in pairs):
        return sorted(pairs, key=lambda r: (r.get("batch") if r.get("batch") is not None else 10**9))
    if all(r.get("timestamp") for r in pairs):
        return sorted(pairs, key=lambda r: _parse_ts(r["timestamp"]))
    # some rows have a timestamp: those go in time order into their own places, the others stay where
    # the file has them (their synthetic timestamps then fit between), so validate finds none out of order
    at = [i for i, r in enumerate(pairs) if r.get("timestamp")]
    out = list(pairs)
    for i, r in zip(at, sorted((pairs[i] for i in at), key=lambda r: _parse_ts(r["timestamp"]))):
        out[i] = r
    return out


def _chunks(rows: list[dict], size: int) -> list[list[dict]]:
    if rows and any(r.get("batch") is not None for r in rows):
        groups: dict = {}
        for r in rows:
            groups.setdefault(r.get("batch"), []).append(r)
        return list(groups.values())
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _group_splits(loaded: list[tuple[object, FormatResult]]) -> dict[str, str]:
    """group -> its explicit split: that of the first used row naming one (sources in order). A row of a
    later source naming the other split is quarantined (``group_in_both_splits``, as within one file)."""
    explicit: dict[str, str] = {}
    for src, res in loaded:
        if src.format not in ("pairs", "hh"):
            continue
        kept = []
        for r in res.rows:
            if r["split"] and explicit.setdefault(r["group"], r["split"]) != r["split"]:
                reason = "group_in_both_splits"
                res.quarantine.append({"format": res.format, "source_file": res.source_file, "line_no": r["line_no"],
                                       "reasons": [reason], "message": f"{explain(reason)} (in an earlier source)",
                                       "raw": json.dumps(r, ensure_ascii=False)[:RAW_MAX_CHARS]})
            else:
                kept.append(r)
        res.rows = kept
        res.check()
    return explicit


def _fill_times(stream: list[list[dict]], synthetic: list[tuple[dict, int, int]], now: datetime) -> None:
    """Timestamps not given (`synthetic`: judgement, batch, k): START + one week per batch + k seconds,
    the batches evenly closer together when more than 21 would pass SYNTHETIC_END (so the same input
    always gives the same data/, and none is in the future); then each kept between the real timestamps
    around it: never earlier than a real one of an earlier batch, never later than one of a later batch,
    never after `now` (real timestamps in the future are ignored: validate quarantines them). So they
    never go backwards across batches."""
    if not synthetic:
        return
    # deterministic (the same data/ whenever prepare runs): batches closer together than a week when the
    # schedule would pass SYNTHETIC_END; `now` only matters on a clock set before that date
    week = min(timedelta(weeks=1), (SYNTHETIC_END - START) / max(len(stream) - 1, 1))
    start = START
    real = [[t for t in (_parse_ts(j["timestamp"]) for j in rows if j["timestamp"]) if t is not None and t <= now]
            for rows in stream]
    before, latest = [], None          # before[b]: the latest real timestamp of the batches before b
    for stamps in real:
        before.append(latest)
        latest = max([*stamps, *([latest] if latest else [])], default=None)
    after, earliest = [None] * len(stream), None    # after[b]: the earliest real one of the batches after b
    for b in range(len(stream) - 1, -1, -1):
        after[b] = earliest
        earliest = min([*real[b], *([earliest] if earliest else [])], default=None)
    for j, b, k in synthetic:
        ts = min(t for t in (start + week * b + timedelta(seconds=k), after[b], now) if t is not None)
        ts = max(ts, before[b]) if before[b] else ts
        j["timestamp"] = ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")   # exact, even a real one's


def build(p: DataParams, root: Path, now: datetime | None = None) -> dict:
    """Everything data/ will hold, as lists of rows (plus the per-source report and quarantines).
    `now`: the present that synthetic timestamps must not pass (default: the clock)."""
    f, seed = p.files, p.seed
    loaded = load_sources(p, root)
    explicit = _group_splits(loaded)
    synthetic: list[tuple[dict, int, int]] = []      # judgements without a timestamp: (row, batch, k)
    prompt_origin: list[int] = []                    # eval_prompts[i] is a row of source prompt_origin[i]
    stream: list[list[dict]] = []
    golden, demos, pool, eval_pairs, eval_prompts = [], [], [], [], []
    annotators: dict[str, int] = {}
    pair_sources = [i for i, (s, _) in enumerate(loaded) if s.format in ("pairs", "hh")]

    def judgement(cid, batch, ts, prompt, ra, rb, ann, label, golden_flag, j):
        annotators.setdefault(ann, batch)
        return {"judgement_id": f"{cid}#{j}", "comparison_id": cid, "batch": batch, "timestamp": ts,
                "prompt_id": _pid(prompt), "prompt": prompt, "response_a": ra, "response_b": rb,
                "policy_version": "unknown", "annotator_id": ann, "label": label, "response_time_s": 0.0,
                "is_golden": golden_flag}

    for si, (src, res) in enumerate(loaded):
        name = _source_name(src)
        if src.format in ("pairs", "hh"):
            train, held = [], []
            for r in res.rows:
                split = explicit.get(r["group"]) or (
                    "eval" if _unit(seed, f"split\0{r['group']}") < f.eval_fraction else "train")
                (held if split == "eval" else train).append(r)
            stream_rows, pool_rows = [], []
            for r in train:
                (pool_rows if _unit(seed, f"pool\0{r['group']}") < f.pool_fraction else stream_rows).append(r)
            for r in pool_rows:
                swap = _unit(seed, f"ab\0{name}\0{r['id']}") < 0.5
                ra, rb = (r["rejected"], r["chosen"]) if swap else (r["chosen"], r["rejected"])
                pool.append({"pair_id": f"{name}:{r['id']}", "prompt_id": _pid(r["prompt"]), "prompt": r["prompt"],
                             "response_a": ra, "response_b": rb, "batch": 0, "policy_version": "unknown"})
            held_groups = list(dict.fromkeys(r["group"] for r in held))      # in order of first appearance
            pre_groups = set(held_groups[:len(held_groups) // 2])
            for r in held:
                if len(pair_sources) == 1:
                    sl = "pre" if r["group"] in pre_groups else "post"    # by group: a prompt is in one slice
                else:
                    sl = "post" if si == pair_sources[-1] else "pre"
                eval_pairs.append({"pair_id": f"{name}:{r['id']}", "prompt": r["prompt"], "chosen": r["chosen"],
                                   "rejected": r["rejected"], "slice": sl, "topic": r["domain"]})
            for chunk in _chunks(_ordered(stream_rows), f.batch_size):
                b = len(stream)
                rows = []
                for k, r in enumerate(chunk):
                    cid = f"{name}:{r['id']}"
                    swap = _unit(seed, f"ab\0{name}\0{r['id']}") < 0.5
                    ra, rb = (r["rejected"], r["chosen"]) if swap else (r["chosen"], r["rejected"])
                    rows.append(judgement(cid, b, r["timestamp"], r["prompt"], ra, rb, name, "b" if swap else "a",
                                          False, 0))
                    if not r["timestamp"]:
                        synthetic.append((rows[-1], b, k))
                    if len(demos) < f.n_sft_demos:
                        demos.append({"prompt_id": _pid(r["prompt"]), "prompt": r["prompt"], "response": r["chosen"]})
                stream.append(rows)
        elif src.format == "annotations":
            a_label, b_label = res.labels
            by_item: dict[str, list[dict]] = {}
            for r in res.rows:
                by_item.setdefault(r["item_id"], []).append(r)
            items = list(by_item.items())
            for start in range(0, len(items), f.batch_size):
                b = len(stream)
                rows = []
                for k, (item, judgements) in enumerate(items[start:start + f.batch_size]):
                    cid = f"{name}:{item}"
                    text = res.items.get(item) or ""
                    prompt = f"{text}\n\nItem {item}: {a_label} or {b_label}?" if text else f"Item {item}: {a_label} or {b_label}?"
                    is_gold = item in res.gold
                    if is_gold:
                        golden.append({"comparison_id": cid, "gold_label": "a" if res.gold[item] == a_label else "b"})
                    for j, r in enumerate(judgements):
                        rows.append(judgement(cid, b, None, prompt, a_label, b_label, r["worker_id"],
                                              "a" if r["label"] == a_label else "b", is_gold, j))
                        synthetic.append((rows[-1], b, k))
                stream.append(rows)
        elif src.format == "prompts":
            rows = res.rows
            for k, r in enumerate(rows):
                eval_prompts.append({"prompt_id": f"{name}:{r['id']}", "prompt": r["text"],
                                     "slice": "pre" if k < len(rows) // 2 else "post", "topic": r["category"]})
                prompt_origin.append(si)

    if not eval_prompts:
        seen: dict[str, dict] = {}
        for r in eval_pairs:
            seen.setdefault(r["prompt"], {"prompt_id": _pid(r["prompt"]), "prompt": r["prompt"],
                                          "slice": r["slice"], "topic": r["topic"]})
        eval_prompts = list(seen.values())
    not_needed: Counter = Counter()     # per source: prompt rows read and valid, beyond files.n_eval_prompts
    if len(eval_prompts) > f.n_eval_prompts:   # keep both slices: an even spread over the list
        idx = dict.fromkeys(np.linspace(0, len(eval_prompts) - 1, f.n_eval_prompts).round().astype(int).tolist())
        not_needed.update(si for i, si in enumerate(prompt_origin) if i not in idx)
        eval_prompts = [eval_prompts[i] for i in idx]
    _fill_times(stream, synthetic, now or datetime.now(timezone.utc))
    last = max(len(stream) - 1, 0)
    for r in pool:
        r["batch"] = last
    report = []
    for si, (s, res) in enumerate(loaded):
        c = res.counts() | {"source": _source_name(s), "rows_not_needed": not_needed[si]}
        c["rows_used"] -= not_needed[si]
        if c["rows_in"] != c["rows_used"] + c["rows_quarantined"] + c["rows_not_needed"]:   # survives python -O
            raise AssertionError(f"{res.source_file}: rows_in != used + quarantined + not needed: {c}")
        report.append(c)
    quarantine: dict[str, list[dict]] = {}
    for s, res in loaded:
        quarantine.setdefault(s.format, []).extend(q | {"source": _source_name(s)} for q in res.quarantine)
    return {"stream": stream, "golden": golden, "annotators": [{"annotator_id": a, "first_batch": b}
                                                              for a, b in annotators.items()],
            "demos": demos, "pool": pool, "eval_pairs": eval_pairs, "eval_prompts": eval_prompts,
            "report": report, "quarantine": quarantine}


def write(built: dict, out_dir: Path) -> None:
    for b, rows in enumerate(built["stream"]):
        _dump(out_dir / "stream" / f"batch_{b:03d}.jsonl", rows)
    for rel, key in [("golden.jsonl", "golden"), ("annotators.jsonl", "annotators"), ("sft/demos.jsonl", "demos"),
                     ("pool/pool.jsonl", "pool"), ("eval/pairs.jsonl", "eval_pairs"),
                     ("eval/prompts.jsonl", "eval_prompts")]:
        _dump(out_dir / rel, built[key])
    for fmt, rows in built["quarantine"].items():
        _dump(out_dir / "quarantine" / f"{fmt}.jsonl", rows)
    summary = {"sources": built["report"], "n_batches": len(built["stream"]),
               "n_judgements": sum(len(b) for b in built["stream"]), "n_golden": len(built["golden"]),
               "n_sft_demos": len(built["demos"]), "n_pool": len(built["pool"]),
               "n_eval_pairs": len(built["eval_pairs"]), "n_eval_prompts": len(built["eval_prompts"])}
    (out_dir / "prepare_report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(
        "Data prepared from user files by `driftkeel prepare-data` (params.yaml `data.files`; see "
        "docs/real-data.md).\nquarantine/ holds every input row that was not used, with its reasons; "
        "prepare_report.json the counts.\n", encoding="utf-8")


def prepare(p: DataParams, root: Path, data_dir: Path, force: bool = False) -> tuple[str, dict]:
    """Write data/ from `data.files` (same overwrite rules as the simulator's `materialise`).
    Returns ("written" | "unchanged", the summary of prepare_report.json)."""
    if p.source != "files" or not p.files.sources:
        raise ValueError("data.source must be 'files' with at least one entry in data.files.sources")
    data_dir = Path(data_dir)
    built = build(p, Path(root))
    if not built["stream"]:
        raise ValueError("data.files: no usable pair or annotation rows: the stream would be empty "
                         "(see the quarantine counts)")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-data.", dir=data_dir.parent))   # beside data/: one rename
    try:
        write(built, tmp)
        summary = json.loads((tmp / "prepare_report.json").read_text(encoding="utf-8"))
        return install_raw_data(tmp, data_dir, force=force), summary
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
