"""The bot scopes threadbox asks for: `manifest.yml`'s, read from it (once, as the module is
imported) so the install flow, the setup check and the app Slack creates from the manifest
never drift apart."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "manifest.yml"


def manifest_bot_scopes(path: Path = MANIFEST_PATH) -> tuple[str, ...]:
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RuntimeError(
            f"threadbox reads its bot scopes from {path} ({error.strerror}): run it from its checkout, or"
            " install it with pip install -e ."
        ) from None
    return tuple(manifest["oauth_config"]["scopes"]["bot"])


BOT_SCOPES = manifest_bot_scopes()
