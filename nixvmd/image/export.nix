# nixvmctl export --format iso|qcow2|raw: the configured vm.nix built as a bootable image with
# nixpkgs' own image builders (nixvmd/image/export.py runs it with nix-build).
#
#   iso:        nixos/modules/installer/cd-dvd/iso-image.nix, attribute config.system.build.isoImage
#               (the file is $out/iso/<isoImage.isoName>)
#   qcow2, raw: nixos/lib/make-disk-image.nix called from a module as config.system.build.image
#               (the file is $out/nixos.qcow2 or $out/nixos.img; legacy BIOS boot with GRUB)
#
# `kernel` (the current kernel under test, a bzImage, or null) is carried as
# /boot/nixvmd/bzImage: the disk images also get a GRUB entry that boots it with the
# system's own initrd and init; the ISO carries it as a file only (iso-image.nix has no
# option for an extra boot entry), its menu boots the system's own kernel.
{
  configuration,
  format,
  kernel ? null,
  system ? builtins.currentSystem,
}:
let
  kernelTarget = "/boot/nixvmd/bzImage";
  kernelFiles = if kernel == null then [ ] else [ { source = kernel; target = kernelTarget; } ];

  isoModule = {
    imports = [ <nixpkgs/nixos/modules/installer/cd-dvd/iso-image.nix> ];
    isoImage.contents = kernelFiles;
  };

  diskModule =
    diskFormat:
    {
      config,
      lib,
      pkgs,
      ...
    }:
    {
      # What a vm.nix made for `nixos-rebuild build-vm` usually leaves out (qemu-vm.nix sets
      # it for the VM only); the user's own settings win.
      fileSystems."/" = lib.mkDefault {
        device = "/dev/disk/by-label/nixos";
        fsType = "ext4";
        autoResize = true;
      };
      boot.loader.grub.device = lib.mkDefault "/dev/vda";
      boot.loader.grub.extraEntries =
        if kernel == null then
          ""
        else
          ''
            menuentry "NixOS with the kernel under test (nixvmd)" {
              linux ${kernelTarget} init=${config.system.build.toplevel}/init ${toString config.boot.kernelParams}
              initrd ${config.system.build.toplevel}/initrd
            }
          '';
      system.build.image = import <nixpkgs/nixos/lib/make-disk-image.nix> {
        inherit config lib pkgs;
        format = diskFormat;
        contents = kernelFiles;
      };
    };

  formats = {
    iso = {
      module = isoModule;
      attribute = "isoImage";
    };
    qcow2 = {
      module = diskModule "qcow2";
      attribute = "image";
    };
    raw = {
      module = diskModule "raw";
      attribute = "image";
    };
  };

  chosen = formats.${format} or (throw "nixvmd export: unknown format ${format} (iso, qcow2, raw)");

  # The format's module first: in the module system the user's settings win anyway, and in
  # simpler evaluators (a later module wins) they still do.
  nixos = import <nixpkgs/nixos> {
    inherit system;
    configuration = {
      imports = [
        chosen.module
        configuration
      ];
    };
  };
in
nixos.config.system.build.${chosen.attribute}
