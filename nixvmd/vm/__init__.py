"""The VM: QEMU command lines, the QEMU process and its QMP session."""
