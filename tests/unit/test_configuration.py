"""docs/configuration.md is generated from the settings models and lists every
environment variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.configuration import MODELS, PAGE, main, render, stale
from tests.conftest import ROOT

#: Where code names a variable: ``os.environ.get("X")``, ``os.environ["X"]``, ``ENV_X = "X"``.
READS = re.compile(
    r"""os\.environ(?:\.get)?[(\[]\s*"([A-Z][A-Z0-9_]+)"|getenv\(\s*"([A-Z][A-Z0-9_]+)"|"""
    r"""^ENV_\w+\s*=\s*"([A-Z][A-Z0-9_]+)\"""",
    re.MULTILINE,
)


def test_the_committed_page_is_what_the_models_generate() -> None:
    assert PAGE.read_text() == render(), "docs/configuration.md drifted: run .venv/bin/python -m scripts.configuration"
    assert main(["--check"]) == 0


def test_every_variable_of_every_model_has_a_row_with_a_meaning() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in render().splitlines() if line.startswith("| `")}
    for model in MODELS:
        for variable in model.variables():
            assert variable in rows, variable
            assert rows[variable].rstrip(" |").split("|")[-1].strip(), f"{variable} has no meaning on the page"
    assert "WORKER_METRICS_PORT" in rows


def test_every_variable_the_code_reads_is_on_the_page() -> None:
    page = PAGE.read_text()
    sources = [p for p in ROOT.rglob("*.py") if not p.relative_to(ROOT).parts[0].startswith((".", "tests"))]
    named = {name for path in sources for match in READS.finditer(path.read_text()) for name in match.groups() if name}
    assert {"PROVIDERS_URL", "BOOKING_KEYS", "TEMPORAL_ADDRESS"} <= named, "the scan found nothing: the pattern broke"
    missing = sorted(name for name in named if f"`{name}`" not in page)
    assert not missing, f"read by the code but not on docs/configuration.md: {missing}"


def test_a_hand_edit_is_noticed(tmp_path: Path) -> None:
    edited = tmp_path / "configuration.md"
    edited.write_text(render().replace("WORKER_METRICS_PORT", "WORKER_METRICS"))
    assert stale(edited)
    assert not stale(PAGE)
