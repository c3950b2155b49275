"""Loaders for user data in documented formats.

HH-RLHF style dialogues: one JSON object per line, `{"chosen": "...", "rejected": "..."}`, both whole
dialogues (`\\n\\nHuman: ...\\n\\nAssistant: ...`) sharing every turn but the last Assistant turn.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ASSISTANT = "\n\nAssistant:"


@dataclass
class LoadResult:
    rows: list[dict] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    rows_in: int = 0

    def check(self) -> None:
        assert self.rows_in == len(self.rows) + len(self.quarantine), "row accounting broken"


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two dialogues into (shared prompt ending in "\\n\\nAssistant:", chosen reply, rejected reply).

    Raises ValueError when there is no final Assistant turn or the prefixes differ."""
    ic, ir = chosen.rfind(ASSISTANT), rejected.rfind(ASSISTANT)
    if ic < 0 or ir < 0:
        raise ValueError("no final '\\n\\nAssistant:' turn")
    prompt_c, prompt_r = chosen[: ic + len(ASSISTANT)], rejected[: ir + len(ASSISTANT)]
    if prompt_c != prompt_r:
        raise ValueError("chosen and rejected dialogues do not share the same prompt turns")
    return prompt_c, chosen[ic + len(ASSISTANT):].strip(), rejected[ir + len(ASSISTANT):].strip()


def load_hh_dialogues(path: str | Path) -> LoadResult:
    """Read an HH-RLHF style JSONL file into prompt/chosen/rejected rows; bad lines are quarantined."""
    res = LoadResult()
    with Path(path).open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            res.rows_in += 1

            def bad(reason: str) -> None:
                res.quarantine.append({"source_file": str(path), "line_no": line_no, "reasons": [reason],
                                       "raw": raw[:500].decode("utf-8", "replace")})

            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad("invalid_utf8")
                continue
            except json.JSONDecodeError as exc:
                bad(f"malformed_json: {exc.msg}")
                continue
            if not isinstance(obj, dict):
                bad("not_an_object")
                continue
            missing = [k for k in ("chosen", "rejected") if not isinstance(obj.get(k), str)]
            if missing:
                bad(f"missing_or_not_text: {','.join(missing)}")
                continue
            try:
                prompt, chosen, rejected = split_dialogue(obj["chosen"], obj["rejected"])
            except ValueError as exc:
                bad(f"unsplittable_dialogue: {exc}")
                continue
            if not chosen or not rejected:
                bad("empty_response")
                continue
            if chosen == rejected:
                bad("identical_responses")
                continue
            res.rows.append({"pair_id": f"hh-{line_no:06d}", "prompt": prompt, "chosen": chosen,
                             "rejected": rejected})
    res.check()
    return res
