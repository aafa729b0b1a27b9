"""Reporting: events, desktop notifications, systemd notify, journald."""
