"""Run records: what one run of a suite against one kernel produced, kept on disk."""
