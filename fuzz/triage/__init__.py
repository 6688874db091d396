"""Triage: bucket keys, the database (schema, engine, records, store) and
the upstream export of a reproducer."""
