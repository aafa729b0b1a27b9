"""nixvmd: a user daemon that runs the kernel edit-compile-test loop by itself."""

__version__ = "0.1.0"
