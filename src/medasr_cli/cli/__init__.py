"""Thin Typer layer: one module per subcommand; options in, one library call, errors out."""
