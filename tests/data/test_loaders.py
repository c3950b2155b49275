import json

from pathlib import Path

import pytest
from shared_data import shared_path

from driftkeel.data.loaders import load_hh_dialogues, split_dialogue

SHARED_DATA = shared_path()

HH = SHARED_DATA / "hh_harmless_sample.jsonl"


def test_split_dialogue():
    c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: like this"
    r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: no"
    prompt, chosen, rejected = split_dialogue(c, r)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:"
    assert (chosen, rejected) == ("like this", "no")


@pytest.mark.skipif(not HH.exists(), reason="shared HH sample not present")
def test_real_hh_sample_loads_and_accounts_for_every_row():
    res = load_hh_dialogues(HH)
    assert res.rows_in == 300
    assert res.rows_in == len(res.rows) + len(res.quarantine)
    assert len(res.rows) >= 290
    for row in res.rows[:50]:
        assert row["prompt"].endswith("\n\nAssistant:") and row["prompt"].startswith("\n\nHuman:")
        assert row["chosen"] != row["rejected"]
    for q in res.quarantine:
        assert q["reasons"]


def test_bad_lines_are_quarantined_with_reasons(tmp_path):
    good = {"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"}
    lines = [json.dumps(good).encode(), b"{not json", b"[1,2]", json.dumps({"chosen": "x"}).encode(),
             json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}).encode(),
             b"\xff\xfe bad utf8", b"", json.dumps({"chosen": good["chosen"], "rejected": good["chosen"]}).encode()]
    f = tmp_path / "hh.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    res = load_hh_dialogues(f)
    assert res.rows_in == 7 and len(res.rows) == 1 and len(res.quarantine) == 6
    reasons = [q["reasons"][0].split(":")[0] for q in res.quarantine]
    assert reasons == ["malformed_json", "not_an_object", "missing_or_not_text", "unsplittable_dialogue",
                       "invalid_utf8", "identical_responses"]
