"""The daemon: the event loop that owns the state, and its control socket."""
