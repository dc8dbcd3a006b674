"""Turn -> model: Claude, and nothing of Slack.

The streamed turn with the code execution tool, the context window it must fit, the transcript
helpers, the request's tools and settings, the Files API, and API errors in words.
"""
