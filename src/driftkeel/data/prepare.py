"""User files (params.yaml `data.files`) -> the canonical data/ layout the DVC chain reads.

Sources are taken in the order listed (= time order): each source's stream comparisons form the next
stream batches. What each format becomes (see docs/real-data.md):

- ``pairs`` / ``hh``: split by ``group`` (never by row; an explicit ``split`` field wins): a seeded
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
- ``prompts``: data/eval/prompts.jsonl (``slice`` by position: first half "pre"); without a prompt
  source the eval prompts come from the eval pairs.

Quarantines go to data/quarantine/<format>.jsonl, counts to data/prepare_report.json.
Unknown response times are 0.0; timestamps not given are synthetic (one week per batch).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from driftkeel.config import DataParams
from driftkeel.data.formats import FormatResult, LOADERS, _parse_ts, load_annotations

START = datetime(2026, 1, 5, tzinfo=timezone.utc)


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
    return pairs


def _chunks(rows: list[dict], size: int) -> list[list[dict]]:
    if rows and any(r.get("batch") is not None for r in rows):
        groups: dict = {}
        for r in rows:
            groups.setdefault(r.get("batch"), []).append(r)
        return list(groups.values())
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def build(p: DataParams, root: Path) -> dict:
    """Everything data/ will hold, as lists of rows (plus the per-source report and quarantines)."""
    f, seed = p.files, p.seed
    loaded = load_sources(p, root)
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
                split = r["split"] or ("eval" if _unit(seed, f"split\0{r['group']}") < f.eval_fraction else "train")
                (held if split == "eval" else train).append(r)
            stream_rows, pool_rows = [], []
            for r in train:
                (pool_rows if _unit(seed, f"pool\0{r['group']}") < f.pool_fraction else stream_rows).append(r)
            for r in pool_rows:
                swap = _unit(seed, f"ab\0{name}\0{r['id']}") < 0.5
                ra, rb = (r["rejected"], r["chosen"]) if swap else (r["chosen"], r["rejected"])
                pool.append({"pair_id": f"{name}:{r['id']}", "prompt_id": _pid(r["prompt"]), "prompt": r["prompt"],
                             "response_a": ra, "response_b": rb, "batch": 0, "policy_version": "unknown"})
            for k, r in enumerate(held):
                if len(pair_sources) == 1:
                    sl = "pre" if k < len(held) // 2 else "post"
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
                    ts = r["timestamp"] or (START + timedelta(weeks=b, seconds=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    rows.append(judgement(cid, b, ts, r["prompt"], ra, rb, name, "b" if swap else "a", False, 0))
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
                    ts = (START + timedelta(weeks=b, seconds=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    for j, r in enumerate(judgements):
                        rows.append(judgement(cid, b, ts, prompt, a_label, b_label, r["worker_id"],
                                              "a" if r["label"] == a_label else "b", is_gold, j))
                stream.append(rows)
        elif src.format == "prompts":
            rows = res.rows
            for k, r in enumerate(rows):
                eval_prompts.append({"prompt_id": f"{name}:{r['id']}", "prompt": r["text"],
                                     "slice": "pre" if k < len(rows) // 2 else "post", "topic": r["category"]})

    if not eval_prompts:
        seen: dict[str, dict] = {}
        for r in eval_pairs:
            seen.setdefault(r["prompt"], {"prompt_id": _pid(r["prompt"]), "prompt": r["prompt"],
                                          "slice": r["slice"], "topic": r["topic"]})
        eval_prompts = list(seen.values())
    if len(eval_prompts) > f.n_eval_prompts:   # keep both slices: an even spread over the list
        idx = np.linspace(0, len(eval_prompts) - 1, f.n_eval_prompts).round().astype(int)
        eval_prompts = [eval_prompts[i] for i in dict.fromkeys(idx.tolist())]
    last = max(len(stream) - 1, 0)
    for r in pool:
        r["batch"] = last
    report = [res.counts() | {"source": _source_name(s)} for s, res in loaded]
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


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(x.relative_to(root)): hashlib.sha256(x.read_bytes()).hexdigest()
            for x in sorted(root.rglob("*")) if x.is_file()}


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
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-data.", dir=data_dir.parent if data_dir.parent.exists() else None))
    try:
        write(built, tmp)
        summary = json.loads((tmp / "prepare_report.json").read_text(encoding="utf-8"))
        if data_dir.exists() and any(data_dir.iterdir()):
            if _tree_digest(data_dir) == _tree_digest(tmp):
                return "unchanged", summary
            if not force:
                raise FileExistsError(f"{data_dir} already holds different data; refusing to overwrite raw data "
                                      "(pass --force to replace it, then `dvc add data`)")
            shutil.rmtree(data_dir)
        elif data_dir.exists():
            data_dir.rmdir()
        shutil.move(str(tmp), str(data_dir))
        return "written", summary
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
