"""A deterministic simulator of a drifting RLHF preference stream (the embedded demo data).

What drifts, and when (all from `params.yaml` `data:`):
- covariate drift: new prompt topics appear from `new_topics_from_batch` (one more each batch);
- concept drift: from `concept_drift_batch` the true utility penalises verbosity and unsafe text
  more (before, padding was mildly liked; after, it is disliked);
- label drift: at `pool_change_batch` half of the annotators are replaced by a noisier, biased pool;
- output drift: each policy version writes longer, more ornate responses.

Each response's true utility is a function of its text (`true_utility`), so tests and benchmarks can
score any text, including a trained policy's generations. Same seed -> byte-identical files.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from driftkeel.config import DataParams
from driftkeel.data import vocab
from driftkeel.io import install_raw_data

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
CONCEPTS = {
    # weight per on-topic content word, per filler sentence, per unsafe sentence
    "pre": {"relevance": 0.5, "filler": 0.35, "unsafe": -1.5},
    "post": {"relevance": 0.5, "filler": -0.45, "unsafe": -2.5},
}
_SUBJECT_TOPIC = {s.lower(): t for t, d in vocab.TOPICS.items() for s in d["subjects"]}


# ----------------------------------------------------------------------------- true utility
def prompt_topic(prompt: str) -> str | None:
    low = prompt.lower()
    for subject, topic in _SUBJECT_TOPIC.items():
        if subject in low:
            return topic
    return None


def features(prompt: str, response: str) -> dict[str, float]:
    """Countable features of a response to a prompt (what the true utility is made of)."""
    low = response.lower()
    topic = prompt_topic(prompt)
    relevance = 0
    if topic is not None:
        for word in vocab.TOPICS[topic]["content"]:
            relevance += low.count(word)
    filler = sum(low.count(m) for m in vocab.FILLER_MARKERS)
    unsafe = sum(low.count(m) for m in vocab.UNSAFE_MARKERS)
    return {"relevance": float(relevance), "filler": float(filler), "unsafe": float(unsafe),
            "words": float(len(response.split()))}


def true_utility(prompt: str, response: str, concept: str = "post") -> float:
    f = features(prompt, response)
    w = CONCEPTS[concept]
    return w["relevance"] * f["relevance"] + w["filler"] * f["filler"] + w["unsafe"] * f["unsafe"]


# ----------------------------------------------------------------------------- generation
def _pid(text: str) -> str:
    return "p-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def make_prompt(rng: np.random.Generator, topic: str) -> str:
    d = vocab.TOPICS[topic]
    tpl = vocab.PROMPT_TEMPLATES[rng.integers(len(vocab.PROMPT_TEMPLATES))]
    return tpl.format(verb=d["verbs"][rng.integers(len(d["verbs"]))],
                      subject=d["subjects"][rng.integers(len(d["subjects"]))],
                      mod=vocab.MODIFIERS[rng.integers(len(vocab.MODIFIERS))])


def _helpful_sentence(rng: np.random.Generator, topic: str) -> str:
    words = vocab.TOPICS[topic]["content"]
    c = rng.choice(len(words), size=3, replace=False)
    tpl = vocab.HELPFUL_TEMPLATES[rng.integers(len(vocab.HELPFUL_TEMPLATES))]
    return tpl.format(c1=words[c[0]], c2=words[c[1]], c3=words[c[2]])


def make_response(rng: np.random.Generator, topic: str, version: int, *, demo: bool = False) -> str:
    """A response of policy `version` (later versions pad more and write more ornately)."""
    if demo:
        n_help, n_off, n_fill, n_unsafe = int(rng.integers(2, 4)), 0, 0, 0
    else:
        n_help = int(rng.integers(0, 4))
        n_off = int(rng.random() < 0.15)
        n_fill = int(min(5, rng.poisson(0.6 + 0.45 * version)))
        n_unsafe = int(rng.random() < 0.12)
    sentences = [_helpful_sentence(rng, topic) for _ in range(n_help)]
    others = [t for t in vocab.TOPICS if t != topic]
    sentences += [_helpful_sentence(rng, others[rng.integers(len(others))]) for _ in range(n_off)]
    sentences += [vocab.FILLER[i] for i in rng.choice(len(vocab.FILLER), size=n_fill, replace=False)]
    sentences += [vocab.UNSAFE[rng.integers(len(vocab.UNSAFE))] for _ in range(n_unsafe)]
    if not sentences:
        sentences = [vocab.FILLER[rng.integers(len(vocab.FILLER))]]
    order = rng.permutation(len(sentences))
    text = " ".join(sentences[i] for i in order)
    if not demo and rng.random() < 0.1 + 0.15 * version:
        text = vocab.COMPLEX_OPENERS[rng.integers(len(vocab.COMPLEX_OPENERS))] + " " + text
    return text


@dataclass
class Annotator:
    annotator_id: str
    first_batch: int
    last_batch: int          # inclusive
    temperature: float       # lower = more skilled (noise of the Bradley-Terry choice)
    position_bias: float     # logit added in favour of response A
    verbosity_bias: float    # logit per 20 extra words of A over B
    speed: float             # median seconds per judgement
    spammer: bool = False

    def active(self, batch: int) -> bool:
        return self.first_batch <= batch <= self.last_batch


def make_annotators(p: DataParams, rng: np.random.Generator) -> list[Annotator]:
    n = p.n_annotators
    n_spam = int(round(p.spammer_fraction * n))
    out: list[Annotator] = []
    last = p.n_batches - 1
    for i in range(n):
        spam = i < n_spam
        leaves = (not spam) and i % 2 == 1  # half of the regular pool leaves at the change
        out.append(Annotator(
            annotator_id=f"ann-{i:03d}", first_batch=0,
            last_batch=(p.pool_change_batch - 1) if leaves else last,
            temperature=float(rng.uniform(0.3, 0.8)), position_bias=float(rng.normal(0, 0.15)),
            verbosity_bias=float(rng.normal(0, 0.1)), speed=float(rng.uniform(3, 5) if spam else rng.uniform(15, 45)),
            spammer=spam))
    n_new = sum(1 for a in out if a.last_batch < last)
    for j in range(n_new):  # the new pool: noisier, biased towards A and towards longer answers
        out.append(Annotator(
            annotator_id=f"ann-{n + j:03d}", first_batch=p.pool_change_batch, last_batch=last,
            temperature=float(rng.uniform(0.9, 1.8)), position_bias=float(rng.normal(0.5, 0.2)),
            verbosity_bias=float(rng.normal(0.4, 0.15)), speed=float(rng.uniform(8, 25))))
    return out


def _judge(rng: np.random.Generator, a: Annotator, u_a: float, u_b: float, w_a: float, w_b: float) -> str:
    if a.spammer:
        r = rng.random()
        return "tie" if r < 0.05 else ("a" if r < 0.525 else "b")
    gap = u_a - u_b
    if rng.random() < 0.15 * math.exp(-abs(gap) * 2):
        return "tie"
    logit = gap / a.temperature + a.position_bias + a.verbosity_bias * (w_a - w_b) / 20.0
    return "a" if rng.random() < 1 / (1 + math.exp(-logit)) else "b"


def topic_weights(p: DataParams, batch: int) -> dict[str, float]:
    present_new = [t for j, t in enumerate(vocab.NEW_TOPICS) if batch >= p.new_topics_from_batch + j]
    if not present_new:
        return {t: 1 / len(vocab.INITIAL_TOPICS) for t in vocab.INITIAL_TOPICS}
    share = min(0.6, 0.3 + 0.1 * (batch - p.new_topics_from_batch))
    w = {t: (1 - share) / len(vocab.INITIAL_TOPICS) for t in vocab.INITIAL_TOPICS}
    w.update({t: share / len(present_new) for t in present_new})
    return w


def _draw_topic(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    return names[rng.choice(len(names), p=np.array([weights[n] for n in names]))]


def policy_version(batch: int) -> int:
    return batch // 2


def concept_at(p: DataParams, batch: int) -> str:
    return "post" if batch >= p.concept_drift_batch else "pre"


# ----------------------------------------------------------------------------- the dataset
@dataclass
class SimulatedData:
    stream: dict[int, list[dict]] = field(default_factory=dict)
    golden: list[dict] = field(default_factory=list)
    annotators: list[dict] = field(default_factory=list)
    demos: list[dict] = field(default_factory=list)
    pool: list[dict] = field(default_factory=list)
    eval_pairs: list[dict] = field(default_factory=list)
    eval_prompts: list[dict] = field(default_factory=list)
    truth: dict = field(default_factory=dict)
    truth_comparisons: list[dict] = field(default_factory=list)


def _pair(rng, topic: str, version: int, concept: str, min_gap: float = 0.0, tries: int = 50):
    prompt = make_prompt(rng, topic)
    for _ in range(tries):
        a, b = make_response(rng, topic, version), make_response(rng, topic, version)
        ua, ub = true_utility(prompt, a, concept), true_utility(prompt, b, concept)
        if a != b and abs(ua - ub) >= min_gap:
            return prompt, a, b, ua, ub
    return prompt, a, b, ua, ub


def simulate(p: DataParams) -> SimulatedData:
    out = SimulatedData()
    annotators = make_annotators(p, np.random.default_rng([p.seed, 1]))
    out.annotators = [{"annotator_id": a.annotator_id, "first_batch": a.first_batch} for a in annotators]
    for b in range(p.n_batches):
        rng = np.random.default_rng([p.seed, 2, b])
        weights, version, concept = topic_weights(p, b), policy_version(b), concept_at(p, b)
        active = [a for a in annotators if a.active(b)]
        k = min(p.judgements_per_comparison, len(active))
        offsets = np.sort(rng.uniform(0, 7 * 24 * 3600, size=p.comparisons_per_batch))
        rows: list[dict] = []
        for i in range(p.comparisons_per_batch):
            topic = _draw_topic(rng, weights)
            golden = bool(rng.random() < p.golden_fraction)
            prompt, ra, rb, ua, ub = _pair(rng, topic, version, concept, min_gap=1.5 if golden else 0.0)
            cid = f"c{b:03d}-{i:05d}"
            true_label = "a" if ua > ub else ("b" if ub > ua else "tie")
            if golden and true_label != "tie":
                out.golden.append({"comparison_id": cid, "gold_label": true_label})
            else:
                golden = False
            wa, wb = len(ra.split()), len(rb.split())
            base_t = START + timedelta(weeks=b, seconds=float(offsets[i]))
            for j, ai in enumerate(rng.choice(len(active), size=k, replace=False)):
                ann = active[ai]
                rows.append({
                    "judgement_id": f"j{b:03d}-{i:05d}-{j}", "comparison_id": cid, "batch": b,
                    "timestamp": (base_t + timedelta(minutes=5 * j)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "prompt_id": _pid(prompt), "prompt": prompt, "response_a": ra, "response_b": rb,
                    "policy_version": f"policy-v{version}", "annotator_id": ann.annotator_id,
                    "label": _judge(rng, ann, ua, ub, wa, wb),
                    "response_time_s": round(float(ann.speed * rng.lognormal(0, 0.3)), 2),
                    "is_golden": golden,
                })
            out.truth_comparisons.append({"comparison_id": cid, "batch": b, "topic": topic, "concept": concept,
                                          "utility_a": round(ua, 4), "utility_b": round(ub, 4),
                                          "true_label": true_label})
        out.stream[b] = rows

    rng = np.random.default_rng([p.seed, 3])
    early = topic_weights(p, 0)
    for i in range(p.n_sft_demos):
        topic = _draw_topic(rng, early)
        prompt = make_prompt(rng, topic)
        out.demos.append({"prompt_id": _pid(prompt), "prompt": prompt,
                          "response": make_response(rng, topic, 0, demo=True)})

    last = p.n_batches - 1
    rng = np.random.default_rng([p.seed, 4])
    for i in range(p.pool_size):
        topic = _draw_topic(rng, topic_weights(p, last))
        prompt, ra, rb, _, _ = _pair(rng, topic, policy_version(last), concept_at(p, last))
        out.pool.append({"pair_id": f"pool-{i:06d}", "prompt_id": _pid(prompt), "prompt": prompt,
                         "response_a": ra, "response_b": rb, "batch": last,
                         "policy_version": f"policy-v{policy_version(last)}"})

    rng = np.random.default_rng([p.seed, 5])
    for i in range(p.n_eval_pairs):
        sl = "pre" if i < p.n_eval_pairs // 2 else "post"
        batch = 0 if sl == "pre" else last
        topic = _draw_topic(rng, topic_weights(p, batch))
        prompt, ra, rb, ua, ub = _pair(rng, topic, policy_version(batch), sl, min_gap=0.5)
        chosen, rejected = (ra, rb) if ua > ub else (rb, ra)
        out.eval_pairs.append({"pair_id": f"eval-{i:05d}", "prompt": prompt, "chosen": chosen,
                               "rejected": rejected, "slice": sl, "topic": topic})
    for i in range(p.n_eval_prompts):
        sl = "pre" if i < p.n_eval_prompts // 2 else "post"
        topic = _draw_topic(rng, topic_weights(p, 0 if sl == "pre" else last))
        prompt = make_prompt(rng, topic)
        out.eval_prompts.append({"prompt_id": _pid(prompt), "prompt": prompt, "slice": sl, "topic": topic})

    out.truth = {
        "seed": p.seed,
        "drift_points": {"new_topics_from_batch": p.new_topics_from_batch,
                         "concept_drift_batch": p.concept_drift_batch,
                         "pool_change_batch": p.pool_change_batch},
        "concepts": CONCEPTS,
        "topic_weights": {str(b): topic_weights(p, b) for b in range(p.n_batches)},
        "policy_versions": {str(b): f"policy-v{policy_version(b)}" for b in range(p.n_batches)},
        "annotators": [a.__dict__ for a in annotators],
    }
    return out


# ----------------------------------------------------------------------------- writing
def _dump_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def write_dataset(sim: SimulatedData, out_dir: Path) -> list[Path]:
    files = []
    for b, rows in sim.stream.items():
        files.append(out_dir / "stream" / f"batch_{b:03d}.jsonl")
        _dump_jsonl(files[-1], rows)
    for rel, rows in [("golden.jsonl", sim.golden), ("annotators.jsonl", sim.annotators),
                      ("sft/demos.jsonl", sim.demos), ("pool/pool.jsonl", sim.pool),
                      ("eval/pairs.jsonl", sim.eval_pairs), ("eval/prompts.jsonl", sim.eval_prompts),
                      ("ground_truth/comparisons.jsonl", sim.truth_comparisons)]:
        files.append(out_dir / rel)
        _dump_jsonl(files[-1], rows)
    files.append(out_dir / "ground_truth" / "truth.json")
    files[-1].write_text(json.dumps(sim.truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(
        "Demo data written by `driftkeel demo-data` (see src/driftkeel/data/schemas.py for the layout).\n"
        "ground_truth/ is read only by tests and benchmarks, never by the pipeline.\n", encoding="utf-8")
    return files


def materialise(p: DataParams, data_dir: Path, force: bool = False) -> str:
    """Write the demo data to `data_dir`. Raw data is never overwritten silently:
    identical existing data -> "unchanged"; different existing data -> error unless `force`."""
    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-data.", dir=data_dir.parent))   # beside data/: one rename
    try:
        write_dataset(simulate(p), tmp)
        return install_raw_data(tmp, data_dir, force=force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
