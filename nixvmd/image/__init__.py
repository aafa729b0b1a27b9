"""Guest images: the direct backend's initramfs and the nix backend's NixOS runner."""
