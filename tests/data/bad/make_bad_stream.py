"""Regenerate the bad-input fixture (run once; the files are committed): python tests/data/bad/make_bad_stream.py

Each line of stream/batch_000.jsonl is one case; README.md lists what each line is and where it must go.
"""
import json
from pathlib import Path

HERE = Path(__file__).parent


def row(jid, **over):
    # each row is its own comparison unless a case says otherwise (one annotator judges a comparison once)
    base = {"judgement_id": jid, "comparison_id": f"c-{jid}", "batch": 0, "timestamp": "2026-01-05T00:00:00Z",
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
    row("j4", annotator_id="ann-3"),                            # 26 duplicate of a quarantined id
    row("j16"),                                                 # 27 clean, no trailing newline
]
(HERE / "stream").mkdir(exist_ok=True)
(HERE / "stream" / "batch_000.jsonl").write_bytes(b"\n".join(lines))
# a second batch: UTF-8 BOM, CRLF line endings, one id duplicated from the first file
second = [row("j20", batch=1), row("j21", batch=1), row("j2", batch=1, annotator_id="ann-1")]
(HERE / "stream" / "batch_001.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(second) + b"\r\n")
# a third batch: the cross-row and character rules (README.md lists each line)
T2 = "2026-01-06T00:00:00Z"
C30 = dict(comparison_id="c30", prompt_id="p-30", timestamp=T2, batch=2)
third = [
    row("j30", annotator_id="ann-1", **C30),                               # 1 clean
    row("j31", annotator_id="ann-1", **C30),                               # 2 same annotator, same comparison
    row("j32", annotator_id="ann-2", **{**C30, "prompt": "Is bread wet?"}),  # 3 comparison mismatch
    row("j33", comparison_id="c5", timestamp=T2, batch=2),                 # 4 golden comparison, is_golden false
    row("j34", timestamp="2999-01-01T00:00:00Z", batch=2),                 # 5 in the future
    row("j35", timestamp="2025-12-01T00:00:00Z", batch=2),                 # 6 before the previous file's window
    row("j36", prompt="Red \x1b[31malert\x1b[0m?", timestamp=T2, batch=2),  # 7 terminal escape in prompt
    row("../../etc/passwd", timestamp=T2, batch=2),                        # 8 path in an id
    row("j38", comparison_id="c 38", timestamp=T2, batch=2),               # 9 whitespace in an id
    row("j39", prompt="\ud800x", timestamp=T2, batch=2),                   # 10 lone surrogate (JSON escape)
    row("j40", timestamp=T2, batch=2).replace(b'"label": "a"', b'"label": "a", "label": "b"'),  # 11 key twice
    row("j41", timestamp=T2 + "\n", batch=2),                              # 12 newline inside the timestamp
    row("j42", prompt="x" * 4001, timestamp=T2, batch=2),                  # 13 prompt over max_prompt_chars
    row("j43", timestamp="2026-01-05T12:00:00Z", batch=2),                 # 14 out of order within the file: kept
    row("j44", comparison_id="c44", label="x", timestamp=T2, batch=2),     # 15 first row of c44, quarantined
    row("j45", comparison_id="c44", annotator_id="ann-1", prompt="Other?", timestamp=T2, batch=2),  # 16 clean
    row("j46", comparison_id="c44", annotator_id="ann-3", timestamp=T2, batch=2),  # 17 differs from line 16
    row("j47", policy_version="policy\x00v0", timestamp=T2, batch=2),      # 18 NUL in policy_version
    row("j48", prompt_id="p" * 300, timestamp=T2, batch=2),                # 19 id too long
]
(HERE / "stream" / "batch_002.jsonl").write_bytes(b"\n".join(third) + b"\n")
# a fourth batch in which every row is bad
(HERE / "stream" / "batch_003.jsonl").write_bytes(
    row("j50", label="maybe", timestamp=T2, batch=3) + b"\n" + b"{not json\n")
(HERE / "golden.jsonl").write_text('{"comparison_id": "c1", "gold_label": "a"}\n'
                                   '{"comparison_id": "c5", "gold_label": "b"}\n', encoding="utf-8")
(HERE / "annotators.jsonl").write_text("".join(
    json.dumps({"annotator_id": f"ann-{i}", "first_batch": 0}) + "\n" for i in (1, 2, 3)), encoding="utf-8")
