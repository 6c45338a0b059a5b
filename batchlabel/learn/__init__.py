"""Learning from reviewed labels: the trainer interface, the Ultralytics trainer, the ``train`` loop (see
``docs/ARCHITECTURE.md``). Importing this package loads nothing heavy."""
