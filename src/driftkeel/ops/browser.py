"""Open an HTML report in a real headless Chromium: a screenshot, and which images the browser decoded.

    python -m driftkeel.ops.browser outputs/drift/report.html report.png

Chromium comes from the system (`bash scripts/install_system.sh` installs the Debian package). It runs
with a throw-away profile, no network services, no sandbox (CI runs as root), no GPU.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html import unescape
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--no-default-browser-check")

# appended to a copy of the page: after `load`, record every <img>'s decoded size in the DOM
_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = imgs.map(function (i) { return [i.alt || '', i.complete, i.naturalWidth, i.naturalHeight]; });
  var pre = document.createElement('pre'); pre.id = 'driftkeel-probe';
  pre.textContent = 'DRIFTKEEL_' + 'PROBE' + JSON.stringify(out) + 'END_' + 'PROBE';
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    env = os.environ.get("DRIFTKEEL_CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(url: str, extra: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium on PATH: run `bash scripts/install_system.sh` "
                                "(or set DRIFTKEEL_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="driftkeel-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              start_new_session=True)


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 2400,
               timeout_s: float = 90) -> Path:
    """Render `html_path` and write a PNG of the first width x height pixels."""
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.unlink(missing_ok=True)          # an earlier run's PNG must not pass for this one
    res = _run(Path(html_path).resolve().as_uri(),
               [f"--screenshot={png_path}", f"--window-size={width},{height}", "--virtual-time-budget=5000"],
               timeout_s)
    if not png_path.exists() or not png_path.stat().st_size:
        raise RuntimeError(f"chromium wrote no screenshot (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return png_path


def decoded_images(html_path: str | Path, timeout_s: float = 90) -> list[dict]:
    """[{"alt", "complete", "width", "height"}] of every <img> as the browser decoded it after `load`."""
    html = Path(html_path).read_text(encoding="utf-8")
    probe = html.replace("</body>", _PROBE + "</body>") if "</body>" in html else html + _PROBE
    with tempfile.TemporaryDirectory(prefix="driftkeel-probe-") as tmp:
        page = Path(tmp) / "probe.html"
        page.write_text(probe, encoding="utf-8")
        res = _run(page.as_uri(), ["--dump-dom", "--virtual-time-budget=5000"], timeout_s)
    m = re.search(r"DRIFTKEEL_PROBE(.*?)END_PROBE", res.stdout, re.S)  # the text, not the script
    if not m:
        raise RuntimeError(f"the page's load event never ran (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return [{"alt": a, "complete": c, "width": w, "height": h} for a, c, w, h in json.loads(unescape(m.group(1)))]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        raise SystemExit("usage: python -m driftkeel.ops.browser REPORT.html [OUT.png]")
    html = Path(argv[0])
    print(json.dumps(decoded_images(html), indent=2))
    if len(argv) > 1:
        print(screenshot(html, argv[1]))


if __name__ == "__main__":
    main()
