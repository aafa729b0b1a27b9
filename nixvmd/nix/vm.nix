# A NixOS VM for nixvmd's nix backend: a starting point, yours to edit.
#
#   nix-build '<nixpkgs/nixos>' -A vm --arg configuration ./vm.nix   # what nixvmd runs
#
# nixvmd boots your kernel in it through NIXPKGS_QEMU_KERNEL_<hostName> (no rebuild when
# the kernel changes) and rebuilds the image only when this file, a file it pulls in, or a
# path in image.inputs changes by content. Your kernel needs what the NixOS guest expects
# built in (virtio, 9p, ext4, overlayfs, 8250 console...): see docs/nix-backend.md.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:
let
  # ---- Settings: edit these ------------------------------------------------------------

  # nixvmd's guest module (its agent as a systemd service). `nixvmctl init --nix` writes
  # the absolute path of the installed nixvmd/nix/guest.nix here.
  nixvmdGuest = ./guest.nix;

  # nixvmd's ssh client key (<state_dir>/ssh/id_ed25519.pub): root logs in by it, and only
  # by it, when nixvmd.toml has vm.network = "user" (`nixvmctl ssh`). `nixvmctl init --nix`
  # writes its path here; null: no key, so no ssh login at all.
  nixvmdSshKey = null;

  # Your fstests, one of two ways:
  #
  # 1. Packaged, with an overlay: a local xfstests tree (or nixpkgs' release with patches) built
  #    into the image, e.g. /home/me/src/xfstests-dev (a path, not a string). Also list it in
  #    image.inputs in nixvmd.toml: Nix copies it through a filter, which nixvmd cannot see, so
  #    that is how an edit in it starts a rebuild: every edit rebuilds the package and image.
  xfstestsSrc = null;
  #
  # 2. Shared, no rebuilds: set xfstests.dev_tree = "/home/me/src/xfstests-dev" in nixvmd.toml
  #    (and xfstests.build = "make -j$(nproc)" to build its helpers on the host) and devTree =
  #    true here. nixvmd shares the working tree read-only with every run (virtiofs, or 9p:
  #    xfstests.dev_tree_share; your kernel needs it built in) and mounts it at xfstests.dir
  #    before check runs, so an edited test runs in the next VM with no Nix at all. Helpers
  #    built on a host that is not NixOS look for /lib64/ld-linux-x86-64.so.2: nix-ld gives
  #    them one, with the libraries fstests' helpers link against.
  devTree = false;

  # Sizes in MiB of the empty disks for fstests: /dev/vdb (TEST_DEV), /dev/vdc (SCRATCH_DEV).
  # They live in nixvmd's state dir and persist between boots.
  testDisks = [
    8192
    8192
  ];

  # ---------------------------------------------------------------------------------------

  localXfstests = _final: prev: {
    xfstests = prev.xfstests.overrideAttrs (_: {
      version = "local";
      # cleanSource leaves out .git, editor backups and result links. If nixpkgs' patches
      # do not apply to your tree, add `patches = [ ];` here.
      src = lib.cleanSource xfstestsSrc;
    });
  };
in
{
  imports = [
    (modulesPath + "/profiles/qemu-guest.nix")
    # '<nixpkgs/nixos>' -A vm adds this itself; importing it here too makes the same file
    # work as a flake's nixosConfiguration (config.system.build.vm).
    (modulesPath + "/virtualisation/qemu-vm.nix")
    nixvmdGuest
  ];

  # The runner is result/bin/run-nixvmd-vm; the kernel variable NIXPKGS_QEMU_KERNEL_nixvmd.
  networking.hostName = "nixvmd";
  networking.firewall.enable = false;

  nixpkgs.overlays = lib.optional (xfstestsSrc != null) localXfstests;

  programs.nix-ld = lib.optionalAttrs devTree {
    enable = true;
    libraries = with pkgs; [
      acl
      attr
      libaio
      liburing
      libuuid
      openssl
      zlib
    ];
  };

  virtualisation = {
    graphics = false; # the serial console (ttyS0) is the console nixvmd records
    memorySize = 2048;
    cores = 2;
    diskSize = 4096;
    emptyDiskImages = testDisks;
  };

  # ssh for `nixvmctl ssh` (vm.network = "user" forwards a host port to port 22): root by
  # nixvmd's key only, never by password (root's is empty, below, for the console alone).
  services.openssh = {
    enable = true;
    settings = {
      PermitRootLogin = "prohibit-password";
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
    };
  };
  users.users.root.openssh.authorizedKeys.keyFiles = lib.optional (nixvmdSshKey != null) nixvmdSshKey;

  # Root on the serial console without a password: this machine exists only to be tested.
  users.users.root.initialHashedPassword = "";
  services.getty.autologinUser = "root";

  documentation.enable = false;
  documentation.nixos.enable = false;
  programs.command-not-found.enable = false;

  environment.systemPackages = with pkgs; (lib.optional (!devTree) xfstests) ++ [
    xfsprogs
    e2fsprogs
    btrfs-progs
    util-linux
    kmod
    fio
    attr
    acl
    quota
    psmisc
    bc
    strace
    trace-cmd
  ];

  # The users and group fstests wants (see its README).
  users.groups.fsgqa = { };
  users.users.fsgqa = {
    isNormalUser = true;
    group = "fsgqa";
    description = "fstests test user";
  };
  users.users.fsgqa2 = {
    isNormalUser = true;
    description = "fstests second test user";
  };
  users.users."123456-fsgqa" = {
    isNormalUser = true;
    description = "fstests user whose name starts with digits";
  };

  systemd.tmpfiles.rules = [
    "d /mnt/test 0755 root root -"
    "d /mnt/scratch 0755 root root -"
  ];

  system.stateVersion = lib.mkDefault lib.trivial.release;
}
