"""The safety team's browser over the released store (read-only)."""
