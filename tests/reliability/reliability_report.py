"""Lines the reliability tests want in pytest's terminal summary (see conftest.py)."""
REPORT: dict[str, str] = {}


def report(name: str, line: str) -> None:
    REPORT[name] = line
    print(f"[reliability] {name}: {line}")
