"""The configuration reference lists every setting taskchan reads."""

from pathlib import Path

from taskchan.conf import DEFAULTS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented_with_its_default():
    text = DOCS.read_text()
    for name, (default, _kind, _meaning) in DEFAULTS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `TASKCHAN_{name}`")), None)
        assert row is not None, f"TASKCHAN_{name} is missing from docs/configuration.md"
        assert repr(default).strip("'") in row.replace('"', "").replace("`", ""), row
