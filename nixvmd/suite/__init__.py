"""Suites: what runs in the guest and how its output becomes tests."""
