"""Scheduled runs: `!schedule <when> <request>` makes a thread do its work again on time, in
the same container. `when` reads the forms, `clock` fires due occurrences into the queue (once
each, however many processes), `commands` and the buttons list, pause, resume and delete them."""
