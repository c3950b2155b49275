"""HH-RLHF dialogues: `{"chosen": "...", "rejected": "..."}`, both whole dialogues
(`\\n\\nHuman: ...\\n\\nAssistant: ...`) sharing every turn but the last Assistant turn. The loader
with its GX suite and quarantine is driftkeel.data.formats.load_hh; this module splits one pair.
"""
from __future__ import annotations

ASSISTANT = "\n\nAssistant:"


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
