"""The query side: projections that follow the global log into read tables, and their queries."""
