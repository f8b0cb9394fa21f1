"""Ketch's store: tables (models), engines and migrations (db), resources (resources)."""
