"""Report to case: domain types, processing, routing, stores, tasks, settings and the CLI."""
