"""The labelling queue in the formats annotation tools import, and labels back into data/.

Export (each row keeps the reason it was chosen):
- JSONL: one queue row a line (`queue.jsonl`, what the pipeline reads);
- Label Studio: `label_studio_tasks.json`, a list of tasks `{"data": {...}, "meta": {...}}` to import
  into a project whose labelling interface is `label_studio_config.xml` (Pairwise: left = a,
  right = b);
- Argilla (2.x): `argilla_records.jsonl`, flat records whose keys are the fields / metadata of
  `argilla_settings.json` (fields prompt, response_a, response_b; a LabelQuestion `preference` with
  a / b / tie; metadata: pair_id, reason, scores). Import:
  `rg.Dataset(name, settings=rg.Settings(...per argilla_settings.json...)).records.log(records)`.

Import (`import_labels`): Label Studio JSON export (`annotations[].result[].value.selected`
left/right, or choices a/b/tie), Argilla exports (`responses.preference[].value`, or a flat
`preference`/`label` field with `user_id`), or plain JSONL `{"pair_id", "label", "annotator_id"}`.
The labels become a NEW stream batch in the judgement schema (data/stream/batch_NNN.jsonl, the next
free index; an existing file is never touched). Rows that cannot be used are returned with a reason
(unknown pair_id, label not a/b/tie, no annotator, repeated annotator on a pair), never dropped silently.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

LS_CONFIG = """<View>
  <Header value="Which response is better?"/>
  <Text name="prompt" value="$prompt"/>
  <Pairwise name="preference" toName="response_a,response_b"/>
  <Text name="response_a" value="$response_a"/>
  <Text name="response_b" value="$response_b"/>
  <Choices name="tie" toName="prompt" showInline="true" required="false">
    <Choice value="tie"/>
  </Choices>
</View>
"""

SCORE_KEYS = ("p_a", "uncertainty", "acquisition", "drift_prior", "drift_region", "member_std", "rank")


def label_studio_tasks(queue: list[dict]) -> list[dict]:
    return [{"data": {k: q[k] for k in ("pair_id", "prompt", "response_a", "response_b")} | {"reason": q["reason"]},
             "meta": {k: q.get(k) for k in ("prompt_id", "batch", "policy_version", *SCORE_KEYS)}}
            for q in queue]


def argilla_settings() -> dict:
    return {
        "guidelines": "Which response answers the prompt better? Pick tie only when neither is better.",
        "fields": [{"name": n, "type": "text"} for n in ("prompt", "response_a", "response_b")],
        "questions": [{"name": "preference", "type": "label_selection", "labels": ["a", "b", "tie"],
                       "required": True}],
        "metadata": [{"name": "pair_id", "type": "terms"}, {"name": "reason", "type": "terms"},
                     {"name": "uncertainty", "type": "float"}, {"name": "p_a", "type": "float"},
                     {"name": "drift_prior", "type": "float"}, {"name": "rank", "type": "integer"}],
    }


def argilla_records(queue: list[dict]) -> list[dict]:
    return [{"id": q["pair_id"], "prompt": q["prompt"], "response_a": q["response_a"],
             "response_b": q["response_b"], "pair_id": q["pair_id"], "reason": q["reason"],
             "uncertainty": q.get("uncertainty"), "p_a": q.get("p_a"), "drift_prior": q.get("drift_prior"),
             "rank": q.get("rank")} for q in queue]


def write_exports(out: Path, queue: list[dict], formats) -> list[str]:
    """Write the queue in `formats` under `out`; returns the file names written."""
    from driftkeel.io import write_json, write_jsonl

    names = []
    if "jsonl" in formats:
        write_jsonl(out / "queue.jsonl", queue)
        names.append("queue.jsonl")
    if "label_studio" in formats:
        write_json(out / "label_studio_tasks.json", label_studio_tasks(queue))
        (out / "label_studio_config.xml").write_text(LS_CONFIG, encoding="utf-8")
        names += ["label_studio_tasks.json", "label_studio_config.xml"]
    if "argilla" in formats:
        write_jsonl(out / "argilla_records.jsonl", argilla_records(queue))
        write_json(out / "argilla_settings.json", argilla_settings())
        names += ["argilla_records.jsonl", "argilla_settings.json"]
    return names


# ----------------------------------------------------------------------------- import
_LS_SIDE = {"left": "a", "right": "b"}


def _read_any(path: Path) -> list:
    """One JSON document (a list or an object) or JSONL; a line that is not UTF-8 JSON becomes
    {"_bad_json_line": n} (rejected with a reason by parse_labels, never dropped)."""
    data = Path(path).read_bytes()
    try:
        obj = json.loads(data.decode("utf-8-sig"))
        return obj if isinstance(obj, list) else [obj]
    except (ValueError, RecursionError):     # not UTF-8 / not JSON / nested past the recursion limit
        rows = []
        for n, line in enumerate(data.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line.decode("utf-8-sig" if n == 1 else "utf-8")))
                except (ValueError, RecursionError):
                    rows.append({"_bad_json_line": n})
        return rows


def parse_labels(rows: list) -> tuple[list[dict], list[dict]]:
    """Tool exports -> ([{pair_id, label, annotator_id, response_time_s}], [rejected with reason])."""
    out, bad = [], []
    for r in rows:
        if not isinstance(r, dict) or "_bad_json_line" in r:
            bad.append({"row": r, "reason": "not a JSON object"})
            continue
        if "annotations" in r and isinstance(r.get("data"), dict):                 # Label Studio
            pid = r["data"].get("pair_id")
            for ann in r.get("annotations") or []:
                if ann.get("was_cancelled"):
                    bad.append({"row": {"pair_id": pid}, "reason": "annotation cancelled"})
                    continue
                answers = []     # every answer in the annotation's results, in order
                for res in ann.get("result") or []:
                    v = res.get("value") or {}
                    if "selected" in v:
                        answers.append(_LS_SIDE.get(v["selected"], v["selected"]))
                    elif v.get("choices"):
                        answers += list(v["choices"])
                who = ann.get("completed_by")
                who = who.get("email") or who.get("id") if isinstance(who, dict) else who
                distinct = list(dict.fromkeys(str(a).strip().lower() for a in answers))
                if len(distinct) > 1:      # two choices ticked, or a pick and a contradicting choice
                    bad.append({"row": {"pair_id": pid, "annotator_id": None if who is None else str(who),
                                        "answers": answers},
                                "reason": f"more than one answer in one annotation: {', '.join(distinct)}"})
                    continue
                label = answers[0] if answers else None
                out.append({"pair_id": pid, "label": label, "annotator_id": None if who is None else str(who),
                            "response_time_s": ann.get("lead_time")})
        elif isinstance(r.get("responses"), dict):                                  # Argilla export
            pid = r.get("pair_id") or (r.get("metadata") or {}).get("pair_id") or r.get("id")
            for resp in r["responses"].get("preference") or []:
                out.append({"pair_id": pid, "label": resp.get("value"), "annotator_id": resp.get("user_id"),
                            "response_time_s": None})
        else:                                                                      # plain / flat Argilla
            out.append({"pair_id": r.get("pair_id") or r.get("id"), "label": r.get("label", r.get("preference")),
                        "annotator_id": r.get("annotator_id", r.get("user_id")),
                        "response_time_s": r.get("response_time_s")})
    return out, bad


def _seconds(v) -> float | None:
    """A response time as float seconds, or None when it is not a finite number >= 0 (a bool is not one)."""
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def labels_to_batch(labels: list[dict], queue: list[dict], batch: int, *, default_response_time_s: float | None,
                    now: datetime | None = None, in_stream: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Parsed labels -> judgement rows of stream batch `batch` (schema: driftkeel.data.schemas).
    `in_stream`: (comparison_id, annotator_id) -> stream file already holding that judgement (a label
    imported twice is rejected with that file named, instead of becoming a repeat that validate quarantines)."""
    by_id = {q["pair_id"]: q for q in queue}
    in_stream = in_stream or {}
    ts = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows, bad, seen = [], [], set()
    for n, lab in enumerate(labels):
        q = by_id.get(lab.get("pair_id"))
        label = str(lab.get("label")).strip().lower() if lab.get("label") is not None else None
        who = lab.get("annotator_id")
        rt = lab.get("response_time_s")
        rt = default_response_time_s if rt is None else rt
        seconds = _seconds(rt)
        reason = ("pair_id not in the labelling queue" if q is None else
                  "label is not a, b or tie" if label not in ("a", "b", "tie") else
                  "no annotator id" if who in (None, "") else
                  "repeated judgement of this pair by this annotator" if (q["pair_id"], str(who)) in seen else
                  f"already imported: this annotator's judgement of this pair is in "
                  f"{in_stream[(q['pair_id'], str(who))]}" if (q["pair_id"], str(who)) in in_stream else
                  "no response time (pass a default)" if rt is None else
                  f"response time {str(rt)[:40]!r} is not a number of seconds >= 0" if seconds is None else None)
        if reason:
            bad.append({"row": lab, "reason": reason})
            continue
        seen.add((q["pair_id"], str(who)))
        rows.append({"judgement_id": f"j{batch:03d}-imp-{n:05d}", "comparison_id": q["pair_id"], "batch": batch,
                     "timestamp": ts, "prompt_id": q.get("prompt_id") or q["pair_id"], "prompt": q["prompt"],
                     "response_a": q["response_a"], "response_b": q["response_b"],
                     "policy_version": q.get("policy_version") or "unknown", "annotator_id": str(who),
                     "label": label, "response_time_s": seconds, "is_golden": False})
    return rows, bad


def _judged(stream: list[Path]) -> dict[tuple[str, str], str]:
    """(comparison_id, annotator_id) -> name of the first stream file holding that judgement. Lines that
    are not JSON objects are skipped here (the validate stage quarantines them)."""
    from driftkeel.validation.reader import iter_lines

    out: dict[tuple[str, str], str] = {}
    for path in stream:
        for _, line in iter_lines(path):
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(row, dict) and row.get("comparison_id") is not None:
                out.setdefault((str(row["comparison_id"]), str(row.get("annotator_id"))), path.name)
    return out


def import_labels(labels_path: Path, queue_path: Path, data_dir: Path, *,
                  default_response_time_s: float | None = None) -> dict:
    """Write the labels as the next stream batch of `data_dir` (a new file); returns a summary with
    the rejected rows and their reasons. Known annotators: data/annotators.jsonl (others are
    reported: the validate stage quarantines judgements of unknown annotators)."""
    from driftkeel.data.schemas import stream_files
    from driftkeel.io import read_jsonl, write_jsonl

    queue = read_jsonl(queue_path)
    parsed, bad = parse_labels(_read_any(Path(labels_path)))
    existing = stream_files(data_dir)
    nxt = 1 + max([int(p.stem.split("_")[1]) for p in existing], default=-1)
    rows, bad2 = labels_to_batch(parsed, queue, nxt, default_response_time_s=default_response_time_s,
                                 in_stream=_judged(existing))
    bad += bad2
    target = Path(data_dir) / "stream" / f"batch_{nxt:03d}.jsonl"
    if target.exists():
        raise FileExistsError(f"{target} exists: raw data is never overwritten")
    known = set()
    ann_path = Path(data_dir) / "annotators.jsonl"
    if ann_path.exists():
        known = {r.get("annotator_id") for r in read_jsonl(ann_path)}
    unknown = sorted({r["annotator_id"] for r in rows} - known)
    if rows:
        write_jsonl(target, rows)
    return {"written": str(target) if rows else None, "batch": nxt, "n_judgements": len(rows),
            "n_rejected": len(bad), "rejected": bad, "unknown_annotators": unknown,
            "note": (f"annotators {unknown} are not in {ann_path}: the validate stage will quarantine their "
                     "judgements until they are added" if unknown else None)}
