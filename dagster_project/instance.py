"""The Dagster instance meterclose runs on: DAGSTER_HOME, with the shipped dagster.yaml.

``python -m dagster_project.instance`` prepares it (``make ui`` does, before `dagster dev`).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster_project.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "dagster.yaml"
# What earlier versions wrote into a new DAGSTER_HOME: ours to replace as well.
_EARLIER = ("telemetry:\n  enabled: false\n",)


def dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to .dagster_home/ in the checkout (set for this process)."""
    return Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home")))


def prepare_instance(home: Path | None = None) -> Path:
    """Create DAGSTER_HOME and give it the shipped dagster.yaml, unless it has one of its own
    (anything but a copy of ours, current or earlier). Returns the config's path."""
    home = home or dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    shipped = SHIPPED.read_text()
    marker = shipped.splitlines()[0]
    if not config.exists():
        config.write_text(shipped)
    else:
        current = config.read_text()
        if current != shipped and (current.startswith(marker) or current in _EARLIER):
            config.write_text(shipped)
    return config


if __name__ == "__main__":
    print(f"Dagster instance settings: {prepare_instance()}")
