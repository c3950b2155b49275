"""Small security helpers: secrets never leave the process, paths stay inside the project, model
files are safetensors, servers stay on the loopback interface unless configured.

- :func:`redact` masks secrets in anything about to be logged (MLflow params, messages): values
  under secret-looking keys, passwords in URLs, and the value of every secret-looking environment
  variable wherever it appears.
- :func:`safe_join` resolves a path from config or data under a root and refuses one that escapes it
  (``..``, an absolute path, a symlink pointing out).
- :func:`check_safetensors_only` refuses a model directory holding pickle-format files.
- :func:`is_loopback` says whether a host string is a loopback address.

Secrets come from environment variables only (``MLFLOW_TRACKING_PASSWORD``, ``HF_TOKEN``, ...); see
RELIABILITY.md.
"""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# a key is secret when one of its words (split on non-letters and camelCase) is in SECRET_WORDS, or two
# consecutive words are in SECRET_PAIRS: HF_TOKEN, MLFLOW_TRACKING_PASSWORD, AWS_SECRET_ACCESS_KEY,
# notify.webhook_url, apiKey; not max_prompt_tokens or TOKENIZERS_PARALLELISM
SECRET_WORDS = {"password", "passwd", "pwd", "secret", "token", "apikey", "credential", "credentials",
                "webhook", "cookie", "auth", "authorization", "bearer", "signature", "passphrase"}
SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                ("signing", "key"), ("session", "id"), ("client", "secret")}
MASK = "***"
_MIN_SECRET_LEN = 6           # shorter env values (e.g. "1", "true") are not masked inside text
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", ".npy", ".npz", ".dill")
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@]+@[^\s]+")


class UnsafePath(ValueError):
    """A path from config or data points outside the folder it must stay in."""


class UnsafeModelFiles(ValueError):
    """A model directory holds weights in a pickle-based format."""


def _words(key: str) -> list[str]:
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key))
    return [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]


def is_secret_key(key: str) -> bool:
    words = _words(key)
    return bool(SECRET_WORDS.intersection(words)) or any(pair in SECRET_PAIRS for pair in zip(words, words[1:]))


def secret_env_values(environ: dict | None = None) -> list[str]:
    """Values of environment variables whose names look secret (longest first)."""
    env = os.environ if environ is None else environ
    vals = {v for k, v in env.items() if is_secret_key(k) and v and len(v) >= _MIN_SECRET_LEN}
    return sorted(vals, key=len, reverse=True)


def strip_url_password(url: str) -> str:
    """``scheme://user:pw@host/...`` -> ``scheme://user:***@host/...`` (other strings unchanged)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.netloc or "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"))


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    secrets = secret_env_values() if secrets is None else secrets
    for s in secrets:
        text = text.replace(s, MASK)
    return _URL_IN_TEXT.sub(lambda m: strip_url_password(m.group(0)), text)


def redact(obj: Any, secrets: list[str] | None = None, _key: str = "") -> Any:
    """A copy of `obj` (dicts, lists, strings, scalars) safe to log."""
    secrets = secret_env_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "", False) else redact(v, secrets, k))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, secrets) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


def safe_join(root: str | Path, *parts: str | Path) -> Path:
    """``root / parts`` resolved; raises UnsafePath unless it stays inside `root` (symlinks followed)."""
    base = Path(root).resolve()
    for part in parts:
        if "\x00" in str(part):
            raise UnsafePath(f"{part!r}: NUL byte in a path")
    target = base.joinpath(*parts).resolve()
    if target != base and not target.is_relative_to(base):
        shown = "/".join(str(p) for p in parts)
        raise UnsafePath(f"{shown!r} resolves to {target}, outside {base}")
    return target


def check_safetensors_only(model_dir: str | Path) -> list[str]:
    """Raise UnsafeModelFiles if `model_dir` holds pickle-format files; return its safetensors files."""
    model_dir = Path(model_dir)
    bad = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")
                 if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if bad:
        raise UnsafeModelFiles(f"{model_dir}: pickle-format files {bad}: only safetensors weights are loaded")
    return sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*.safetensors"))


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
