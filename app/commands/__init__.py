"""Subcommands of the `jumpboard` CLI, one module each, each exposing `register(subparsers)`."""
