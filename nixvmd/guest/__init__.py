"""The guest side: the agent that runs in the VM and the protocol it speaks."""
