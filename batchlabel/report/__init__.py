"""``batchlabel report``: what the SAM assistance saved, per label and model version, and which tasks to review first.

Modules: :mod:`.source` (the tasks with their predictions in full, live or from an export), :mod:`.matching`
(predicted objects vs the reviewed annotation's objects), :mod:`.metrics` (counts, IoU, times, the time-saved
estimate, the JSON), :mod:`.routing` (least certain unreviewed tasks, the Data Manager tab), :mod:`.render` (PNG
chart and HTML page). The subcommand is :mod:`batchlabel.commands.report`.
"""
