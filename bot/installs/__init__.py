"""Many workspaces: Slack's install flow (OAuth), the installations it stores in threadbox's own
database, token rotation, and the workspace seam that serves every installation.

Bolt and slack_sdk do the flow, each request's token (Bolt's authorize) and the rotation
(`AsyncTokenRotator`); this package hands them threadbox's store and its Slack URL.
"""
