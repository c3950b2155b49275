import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # shared test helpers (summary_lines, shared_data)

from shared_data import shared_data_dir  # noqa: E402

SHARED_DATA = shared_data_dir() or REPO.parent / "shared" / "data"
if shared_data_dir() is not None:  # benchmarks and subprocesses find it too
    os.environ.setdefault("DRIFTKEEL_SHARED_DATA", str(shared_data_dir()))

# Under pytest-xdist (`-n 2` in scripts/test.sh) each worker gets its own Prefect home (its own
# ephemeral API database) and one math thread, so two workers share the two cores instead of
# oversubscribing them. Set before any test module imports prefect or torch.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    _home = Path(os.environ.get("PREFECT_HOME") or tempfile.mkdtemp(prefix="prefect-")) / _WORKER
    _home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(_home)
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import summary_lines  # noqa: E402


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        fd, path = tempfile.mkstemp(prefix="driftkeel-summary-", suffix=".jsonl")
        os.close(fd)
        os.environ["DRIFTKEEL_SUMMARY_FILE"] = path
        config._driftkeel_summary = path


def pytest_terminal_summary(terminalreporter, config):
    path = getattr(config, "_driftkeel_summary", None)
    lines = summary_lines.read(path) if path else {}
    if lines:
        terminalreporter.section("driftkeel: generated cases and fault runs")
        for name, line in sorted(lines.items()):
            terminalreporter.write_line(f"{name}: {line}")


@pytest.fixture(autouse=True)
def _isolate_mlflow_uris():
    """`mlflow.set_tracking_uri` (called by the stage code run in-process) also sets
    MLFLOW_TRACKING_URI in os.environ; without this, the next test would talk to the previous
    test's store."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
                                            "MLFLOW_EXPERIMENT_NAME")}
    yield
    track = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if track is not None and getattr(track, "_tracking_uri", None) is not None:
        track._tracking_uri = None
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None and getattr(fluent, "_active_experiment_id", None) is not None:
        fluent._active_experiment_id = None
    reg = sys.modules.get("mlflow.tracking._model_registry.utils")
    if reg is not None and getattr(reg, "_registry_uri", None) is not None:
        reg._registry_uri = None
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# Longest modules first (seconds per module on 2 cores, from `--durations`): under `--dist loadfile` each
# module runs on one worker. scripts/test.sh passes --no-loadscope-reorder so that xdist hands modules out
# in this collection order; its default order (by number of tests) started the real-data chain, a module
# of one test, near the end, where it ran alone on one worker while the other idled.
_FIRST = ("tests/e2e/",                                   # ~520 s: the tiny default killed and rerun
          "tests/data/test_real_pipeline.py",             # ~60 s (the whole chain, --extended: ~270 s)
          "tests/flows/test_server.py",                   # ~130 s
          "tests/flows/test_new_data.py",                 # ~105 s
          "tests/training/test_training_stages.py",       # ~100 s
          "tests/training/test_distributed.py",           # ~80 s
          "tests/flows/test_flows.py",
          "tests/reliability/test_bad_input_properties.py",
          "tests/data/test_real_formats.py")


EXTENDED_ENV = "DRIFTKEEL_EXTENDED_TESTS"


def pytest_addoption(parser):
    parser.addoption("--extended", action="store_true", default=False,
                     help="also run the tests marked `extended` (long runs beyond the 15-minute CI budget, "
                          f"e.g. the whole real-data chain); or set {EXTENDED_ENV}=1")


def pytest_collection_modifyitems(config, items):
    if not (config.getoption("--extended") or os.environ.get(EXTENDED_ENV) == "1"):
        skip = pytest.mark.skip(reason="extended test: run with `bash scripts/test.sh --extended`")
        for item in items:
            if "extended" in item.keywords:
                item.add_marker(skip)

    def rank(item):
        rel = Path(str(item.fspath)).resolve().relative_to(REPO).as_posix()
        return next((i for i, prefix in enumerate(_FIRST) if rel.startswith(prefix)), len(_FIRST))

    items.sort(key=rank)  # stable: the order within a module is kept
