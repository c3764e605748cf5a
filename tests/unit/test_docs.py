"""The configuration reference lists every setting taskchan reads; troubleshooting, every check."""

import re
from pathlib import Path

from taskchan.conf import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "configuration.md"
CHECK_ID = re.compile(r"taskchan\.[EW]\d{3}")


def test_every_setting_is_documented_with_its_default():
    text = DOCS.read_text()
    for name, (default, _kind, _meaning) in DEFAULTS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `TASKCHAN_{name}`")), None)
        assert row is not None, f"TASKCHAN_{name} is missing from docs/configuration.md"
        assert repr(default).strip("'") in row.replace('"', "").replace("`", ""), row


def test_every_system_check_has_a_row_in_troubleshooting():
    ids = {found for path in (ROOT / "taskchan").rglob("*.py") for found in CHECK_ID.findall(path.read_text())}
    assert len(ids) >= 16  # the pattern still finds the checks
    rows = {
        found for line in (ROOT / "docs" / "troubleshooting.md").read_text().splitlines()
        if line.startswith("| `taskchan.") for found in CHECK_ID.findall(line)
    }
    assert sorted(ids - rows) == [], "checks without a row in docs/troubleshooting.md's table"
