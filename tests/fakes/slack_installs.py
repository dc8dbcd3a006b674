"""The fake Slack's installations: who holds which token, in which workspace or organisation.

Slack's install flow as an app distributed by OAuth sees it: `/oauth/v2/authorize` (the page a
person approves, here answered at once with a redirect), `oauth.v2.access` (a code, or with
token rotation a refresh token, for a bot token), tokens that expire and refresh tokens that
work once, and org-wide installs on Enterprise Grid that serve every workspace of the org.
A token is good only where its installation is: a channel of another workspace is
`channel_not_found` to it, as it is to the real Slack.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

CLIENT_ID = "1111.2222"
CLIENT_SECRET = "fake-client-secret"
CODE_SECONDS = 600
"""How long an authorization code can be exchanged (Slack: 10 minutes), once."""
TOKEN_SECONDS = 43200
"""A rotating token's life (Slack: 12 hours)."""


@dataclass
class Installation:
    """One install of the app: a workspace's, or (team_id None) an org-wide one."""

    team_id: str | None
    enterprise_id: str | None
    bot_user_id: str
    bot_id: str
    token: str
    scopes: tuple[str, ...]
    installer: str = "U1"
    refresh_token: str | None = None
    expires_at: float | None = None
    retired: dict[str, float] = field(default_factory=dict)
    """Earlier access tokens of this install that still work until they expire."""

    @property
    def is_enterprise_install(self) -> bool:
        return self.team_id is None

    @property
    def key(self) -> str:
        return self.team_id or self.enterprise_id or ""


class SlackInstalls:
    """The installations of the app, its tokens and the workspaces they reach."""

    def __init__(self, team_id: str, bot_token: str, bot_user_id: str, bot_id: str, scopes: tuple[str, ...]) -> None:
        self.home_team = team_id
        self.granted_scopes = scopes
        self.rotation = False
        """Token rotation on (the app's setting): tokens expire and come with a refresh token."""
        self.token_seconds = TOKEN_SECONDS
        self.redirect_uri: str | None = None
        """The app's one redirect URL, as its settings list it (an authorize URL without one uses it)."""
        self.workspaces: dict[str, str | None] = {team_id: None}
        """Each workspace, and the Enterprise Grid org it belongs to (None: none)."""
        self.channel_teams: dict[str, set[str]] = {}
        """Which workspaces a channel is in (a Slack Connect channel: several). Unlisted: the first."""
        self.installed: list[Installation] = [
            Installation(team_id, None, bot_user_id, bot_id, bot_token, scopes)
        ]
        self._codes: dict[str, tuple[Installation, float]] = {}
        self._n = 0

    # ------------------------------------------------------------------ test controls

    def add_workspace(self, team_id: str, enterprise_id: str | None = None) -> None:
        self.workspaces[team_id] = enterprise_id

    def place_channel(self, channel_id: str, *team_ids: str) -> None:
        """Put a channel in these workspaces (two or more: a Slack Connect channel)."""
        self.channel_teams[channel_id] = set(team_ids)

    def of(self, key: str) -> Installation:
        """The install of a workspace (team id) or of an org (enterprise id)."""
        return next(i for i in self.installed if i.key == key)

    def expire(self, key: str) -> None:
        """Let the install's current token reach its end now (rotation on)."""
        install = self.of(key)
        install.expires_at = time.time() - 1

    def uninstall(self, key: str) -> Installation:
        """The app is removed there: its tokens stop working."""
        install = self.of(key)
        self.installed.remove(install)
        return install

    # ------------------------------------------------------------------ the install flow

    def authorize(self, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        """`/oauth/v2/authorize`, approved at once in the workspace `team` (a query parameter only
        the tests send: in Slack the person picks it). `org=1`: an org-wide install. Returns
        where the browser goes next and with what."""
        redirect = query.get("redirect_uri") or self.redirect_uri
        if not redirect or (self.redirect_uri and redirect != self.redirect_uri):
            return "", {"error": "bad_redirect_uri"}
        state = {"state": query["state"]} if "state" in query else {}
        if query.get("client_id") != CLIENT_ID:
            return redirect, {"error": "invalid_client_id", **state}
        scopes = tuple(s for s in query.get("scope", "").split(",") if s)
        if not scopes or any(scope not in self.granted_scopes for scope in scopes):
            return redirect, {"error": "invalid_scope", **state}
        if query.get("user_scope"):
            return redirect, {"error": "invalid_scope", **state}
        team = query.get("team", self.home_team)
        if team not in self.workspaces or query.get("deny"):
            return redirect, {"error": "access_denied", **state}
        enterprise = self.workspaces[team]
        org_wide = query.get("org") == "1"
        if org_wide and enterprise is None:
            return redirect, {"error": "org_login_required", **state}
        self._n += 1
        install = Installation(
            team_id=None if org_wide else team,
            enterprise_id=enterprise,
            bot_user_id=f"{'W' if enterprise else 'U'}BOT{self._n}",
            bot_id=f"BBOT{self._n}",
            token="",
            scopes=scopes,
            installer=query.get("user", "U1"),
        )
        code = f"code-{secrets.token_hex(8)}"
        self._codes[code] = (install, time.time() + CODE_SECONDS)
        return redirect, {"code": code, **state}

    def access(self, args: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """`oauth.v2.access`: the client's credentials (HTTP Basic, or in the form) and a code, or
        (`grant_type=refresh_token`) a refresh token that has not been used before."""
        client_id, client_secret = args.get("client_id"), args.get("client_secret")
        basic = headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client_id != CLIENT_ID:
            return {"ok": False, "error": "invalid_client_id"}
        if client_secret != CLIENT_SECRET:
            return {"ok": False, "error": "bad_client_secret"}
        grant = args.get("grant_type") or "authorization_code"
        if grant == "refresh_token":
            install = next((i for i in self.installed if i.refresh_token and i.refresh_token == args.get("refresh_token")), None)
            if install is None:
                return {"ok": False, "error": "invalid_refresh_token"}
            if install.expires_at is not None:
                install.retired[install.token] = install.expires_at
            self._issue(install)
            return self._granted(install)
        if grant != "authorization_code":
            return {"ok": False, "error": "invalid_grant_type"}
        entry = self._codes.pop(str(args.get("code", "")), None)
        if entry is None or entry[1] < time.time():
            return {"ok": False, "error": "invalid_code"}
        install = entry[0]
        if self._redirect_mismatch(args):
            return {"ok": False, "error": "bad_redirect_uri"}
        earlier = [i for i in self.installed if i.key == install.key]
        for old in earlier:  # a reinstall replaces the earlier install's tokens
            self.installed.remove(old)
        self._issue(install)
        self.installed.append(install)
        return self._granted(install)

    def _redirect_mismatch(self, args: dict[str, Any]) -> bool:
        given = args.get("redirect_uri")
        return bool(given) and self.redirect_uri is not None and given != self.redirect_uri

    def _issue(self, install: Installation) -> None:
        self._n += 1
        install.token = f"xoxb-{install.key}-{self._n}-{secrets.token_hex(4)}"
        if self.rotation:
            install.token = f"xoxe.{install.token}"
            install.refresh_token = f"xoxe-1-{secrets.token_hex(8)}"
            install.expires_at = time.time() + self.token_seconds

    def _granted(self, install: Installation) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "ok": True,
            "app_id": "A1",
            "authed_user": {"id": install.installer},
            "scope": ",".join(install.scopes),
            "token_type": "bot",
            "access_token": install.token,
            "bot_user_id": install.bot_user_id,
            "team": {"id": install.team_id, "name": f"Workspace {install.team_id}"} if install.team_id else None,
            "enterprise": {"id": install.enterprise_id, "name": f"Org {install.enterprise_id}"}
            if install.enterprise_id else None,
            "is_enterprise_install": install.is_enterprise_install,
        }
        if install.refresh_token is not None and install.expires_at is not None:
            answer["refresh_token"] = install.refresh_token
            answer["expires_in"] = int(install.expires_at - time.time())
        return answer

    # ------------------------------------------------------------------ tokens at work

    def holder(self, token: str) -> tuple[Installation | None, str | None]:
        """The install a token belongs to, or why Slack refuses it."""
        now = time.time()
        for install in self.installed:
            if token == install.token:
                if install.expires_at is not None and install.expires_at < now:
                    return None, "token_expired"
                return install, None
            if token in install.retired:
                return (install, None) if install.retired[token] >= now else (None, "token_expired")
        return None, "invalid_auth"

    def reaches(self, install: Installation, channel_id: str) -> bool:
        """Whether the install's bot can act in that channel."""
        teams = self.channel_teams.get(channel_id, {self.home_team})
        if install.team_id is not None:
            return install.team_id in teams
        return any(self.workspaces.get(team) == install.enterprise_id for team in teams)

    def auth_test(self, install: Installation) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{(install.key or 'fake-workspace').lower()}.slack.com/",
            "team": f"Workspace {install.team_id}" if install.team_id else "",
            "user": "threadbox",
            "team_id": install.team_id or "",
            "user_id": install.bot_user_id,
            "bot_id": install.bot_id,
            "enterprise_id": install.enterprise_id or "",
            "is_enterprise_install": install.is_enterprise_install,
        }
