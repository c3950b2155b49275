"""The drift report.html opens in a real browser (headless Chromium) with its plots drawn."""
import base64

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from driftkeel.config import DriftParams
from driftkeel.drift.monitor import analyse_stream
from driftkeel.drift.report import write_outputs
from driftkeel.embeddings import HASHING, Embedder
from driftkeel.ops.browser import decoded_images, screenshot

OLD = ["cooking pasta", "baking bread", "a trip to Lisbon", "packing for a hike", "piano scales", "tomato plants"]
NEW = ["a crypto wallet", "validator rewards", "an NFT token"]
FIGURES = ["Drift history", "Response lengths: reference vs current", "Annotator agreement", "Prompt embeddings"]
TAB_BLUE, TAB_ORANGE, TAB_RED = (31, 119, 180), (255, 127, 14), (214, 39, 40)  # matplotlib's default colours


def _stream(n_batches=4, per_batch=50, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n_batches):
        for i in range(per_batch):
            topics = OLD + (NEW * 3 if b == n_batches - 1 else [])
            t = topics[rng.integers(len(topics))]
            good, bad = f"Start with {t}, then check the details.", "It depends. " * int(rng.integers(1, 4 + 4 * b))
            a_good = bool(rng.random() < 0.5)
            rows.append({"comparison_id": f"c{b}-{i}", "batch": b, "prompt_id": f"p{b}-{i}",
                         "prompt": f"How do I go about {t} #{i % 9}?", "response_a": good if a_good else bad,
                         "response_b": bad if a_good else good, "label": "a" if a_good else "b",
                         "confidence": 1.0, "agreement": float(rng.choice([1.0, 2 / 3], p=[0.8, 0.2]))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    out = tmp_path_factory.mktemp("drift")
    params = DriftParams(reference_batches=2, min_window=20, n_permutations=99)
    report, plots = analyse_stream(_stream(), None, params, Embedder(backend=HASHING), seed=0)
    assert report["status"] == "alarm"
    return write_outputs(out, report, plots)["paths"]["html"]


def _near(img: Image.Image, rgb, tol=12) -> int:
    a = np.asarray(img.convert("RGB"), dtype=int)
    return int((np.abs(a - np.array(rgb)).max(axis=2) <= tol).sum())


def test_every_plot_of_the_report_is_decoded_by_the_browser(chromium, report_html):
    imgs = decoded_images(report_html)
    assert set(FIGURES) <= {i["alt"] for i in imgs}
    assert all(i["complete"] and i["width"] >= 300 and i["height"] >= 200 for i in imgs), imgs


def test_the_screenshot_shows_the_plots(chromium, report_html, tmp_path):
    png = screenshot(report_html, tmp_path / "report.png", width=1280, height=1800)
    img = Image.open(png)
    assert img.size == (1280, 1800)
    gray = np.asarray(img.convert("L"))
    assert (gray < 250).mean() > 0.03  # not a blank page
    # the figures come right after the decision: their colours are on the first screen
    assert _near(img, TAB_BLUE) > 400, "no blue marks (reference window, p-value lines) drawn"
    assert _near(img, TAB_ORANGE) > 400, "no orange marks (current window) drawn"
    assert _near(img, TAB_RED) > 300, "no alarm (red) bars drawn"


def test_a_broken_plot_is_caught(chromium, report_html, tmp_path):
    """The check has teeth: a corrupted embedded PNG decodes to 0 x 0."""
    html = report_html.read_text()
    start = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(html[:start] + base64.b64encode(b"not a png").decode() + html[html.index("'", start):])
    imgs = decoded_images(broken)
    assert imgs[0]["width"] == 0 and all(i["width"] > 0 for i in imgs[1:])
