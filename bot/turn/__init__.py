"""Queue -> turn: one queue item from start to finish.

A `TurnContext` carries the item, its workspace, the channel's settings, where the reply goes
and the stop signal down the path: the checks that may end the turn with words, the in-thread
commands, the prompt, the model turn, the reply, and the files the answer owes.
"""
