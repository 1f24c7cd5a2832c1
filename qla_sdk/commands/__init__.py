"""One module per `qla` subcommand."""
