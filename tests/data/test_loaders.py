import json

from driftkeel.data.formats import load_hh
from driftkeel.data.loaders import split_dialogue


def test_split_dialogue():
    c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: like this"
    r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: no"
    prompt, chosen, rejected = split_dialogue(c, r)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:"
    assert (chosen, rejected) == ("like this", "no")


def test_bad_hh_lines_are_quarantined_with_reasons(tmp_path):
    # the shared sample and more bad dialogues: tests/data/test_real_formats.py
    good = {"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"}
    lines = [json.dumps(good).encode(), b"{not json", b"[1,2]", json.dumps({"chosen": "x"}).encode(),
             json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}).encode(),
             b"\xff\xfe bad utf8", b"", json.dumps({"chosen": good["chosen"], "rejected": good["chosen"]}).encode(),
             b"[" * 100_000]                                          # nested past the recursion limit
    f = tmp_path / "hh.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    res = load_hh(f)
    assert res.rows_in == 8 and len(res.rows) == 1 and len(res.quarantine) == 7
    assert {q["line_no"]: q["reasons"] for q in res.quarantine} == {
        2: ["malformed_json"], 3: ["not_a_json_object"],
        4: ["expect_column_values_to_not_be_null:rejected"],   # hh has no prompt field: no reason for it,
        5: ["unsplittable_dialogue"], 6: ["invalid_utf8"], 8: ["identical_responses"], 9: ["malformed_json"]}
