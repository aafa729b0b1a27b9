"""One run: its workspace, its VM, the guest's transcript and the outcome decided from it."""
