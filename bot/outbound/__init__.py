"""Model -> Slack: what people see.

The reply with its stream and message renderers, every Block Kit piece and action id, the Home
tab, files uploaded into threads, notes to people, and mrkdwn text helpers.
"""
