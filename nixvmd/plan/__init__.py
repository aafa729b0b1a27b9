"""Planning: what a set of changes means for the loop (pure)."""
