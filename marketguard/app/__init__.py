"""The composition root: CLI, HTTP API, scheduler and reports wire every stage together."""
