"""The bot scopes threadbox asks for: `manifest.yml`'s, read from it (once, as the module is
imported) so the install flow, the setup check and the app Slack creates from the manifest
never drift apart."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

# The checkout's manifest, else the copy `pip install .` puts beside the environment.
MANIFEST_PATHS = (
    Path(__file__).resolve().parents[2] / "manifest.yml",
    Path(sys.prefix) / "share" / "threadbox" / "manifest.yml",
)


def manifest_bot_scopes(paths: tuple[Path, ...] = MANIFEST_PATHS) -> tuple[str, ...]:
    path = next((path for path in paths if path.is_file()), paths[0])
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(manifest["oauth_config"]["scopes"]["bot"])


BOT_SCOPES = manifest_bot_scopes()
