"""Watching the inputs: kernel image, config file, image inputs (inotify)."""
