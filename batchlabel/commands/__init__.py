"""The face layer: every subcommand's ``xxx_command(config, args) -> exit code``, ``up``, ``check`` and the automatic
dataset build. It composes the packages below it; nothing in batchlabel imports it (``batchlabel.cli`` loads each
command lazily by name)."""
