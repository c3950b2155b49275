"""Regenerate the bad-input fixture (run once; the files are committed): python tests/data/bad/make_bad_stream.py

Each line of stream/batch_000.jsonl is one case; README.md lists what each line is and where it must go.
"""
import json
from pathlib import Path

HERE = Path(__file__).parent


def row(jid, **over):
    base = {"judgement_id": jid, "comparison_id": "c2", "batch": 0, "timestamp": "2026-01-05T00:00:00Z",
            "prompt_id": "p-2", "prompt": "How do I bake bread?", "response_a": "Knead it.",
            "response_b": "Buy it.", "policy_version": "policy-v0", "annotator_id": "ann-2",
            "label": "a", "response_time_s": 12.0, "is_golden": False}
    base.update(over)
    return json.dumps({k: v for k, v in base.items() if v is not _DROP}, allow_nan=True).encode()


_DROP = object()
GOLD = dict(comparison_id="c1", prompt_id="p-1", prompt="Is water wet?", is_golden=True)
lines = [
    row("j1", annotator_id="ann-1", **GOLD),                    # 1 clean (golden)
    row("j2"),                                                  # 2 clean
    b"",                                                        # 3 blank
    b"   \t ",                                                  # 4 blank
    b'{"judgement_id": "j-bad", "label": ',                     # 5 malformed_json
    b"[1, 2, 3]",                                               # 6 not_a_json_object
    b'"just a string"',                                         # 7 not_a_json_object
    row("j3", label=_DROP),                                     # 8 missing label
    row("j4", label="c"),                                       # 9 unknown label
    row("j5", prompt=""),                                       # 10 empty prompt
    row("j6", prompt="     "),                                  # 11 whitespace prompt
    row("j1", annotator_id="ann-3", **GOLD),                    # 12 duplicate id (first kept)
    row("j-utf8", prompt="caf\udce9").replace(b"\\udce9", b"\xe9"),  # 13 invalid UTF-8 (latin-1 e-acute)
    row("j7", annotator_id="ann-999"),                          # 14 unknown annotator
    row("j8", batch="three", response_time_s=float("nan")),     # 15 uncoercible batch, NaN time
    row("j9", response_time_s=-1, timestamp="not a time"),      # 16 negative time, bad timestamp
    row("j10", comparison_id="c9", is_golden=True),             # 17 golden not in golden.jsonl
    row(12345, batch="0", response_time_s="12.5", is_golden=0),  # 18 clean after coercion
    row("j11", batch=-1, extra_field="x"),                      # 19 negative batch (+ an extra key)
    row("j12", timestamp="2026-13-45T00:00:00Z"),               # 20 ISO-looking, not a date
    row("j13", response_a="x" * 8001),                          # 21 response_a too long
    row("j14", is_golden="maybe"),                              # 22 uncoercible bool
    row("j15").replace(b'"batch": 0', b'"batch": NaN'),         # 23 JSON NaN literal for an int
    row(None),                                                  # 24 null judgement_id
    row("j1", label="x", **GOLD),                               # 25 duplicate id AND unknown label
    row("j4"),                                                  # 26 duplicate of a quarantined id
    row("j16"),                                                 # 27 clean, no trailing newline
]
(HERE / "stream").mkdir(exist_ok=True)
(HERE / "stream" / "batch_000.jsonl").write_bytes(b"\n".join(lines))
# a second batch: UTF-8 BOM, CRLF line endings, one id duplicated from the first file
second = [row("j20", batch=1), row("j21", batch=1), row("j2", batch=1)]
(HERE / "stream" / "batch_001.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(second) + b"\r\n")
(HERE / "golden.jsonl").write_text('{"comparison_id": "c1", "gold_label": "a"}\n', encoding="utf-8")
(HERE / "annotators.jsonl").write_text("".join(
    json.dumps({"annotator_id": f"ann-{i}", "first_batch": 0}) + "\n" for i in (1, 2, 3)), encoding="utf-8")
