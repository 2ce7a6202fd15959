"""What comes in: experiment specs, the one source of truth for the CLI, the REST API and the
stored job row.

Plain pydantic, importable without torch (the API process validates specs with this package
alone). Every field is bounded; errors name the field. `sections` holds the spec sections,
`experiments` the experiment kinds, `parsing` turns a raw mapping into one (`parse_spec`),
`problems` the error type, `grid` a sweep's points, `cost` and `budget` what a spec costs and
whether it fits.
"""
