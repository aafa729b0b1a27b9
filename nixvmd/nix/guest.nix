# nixvmd's guest side for a NixOS VM: the agent as a systemd service. Import it from vm.nix.
#
# The agent (nixvmd/guest/agent.sh, a POSIX sh script started with no arguments) asks the
# host for its job and reports progress and results over the virtio-serial port named
# org.nixvmd.agent, which nixvmd adds to QEMU's command line; results for the host go to
# the shared directory, mounted at /tmp/shared by qemu-vm.nix ($SHARED_DIR on the host).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.nixvmd-agent;
  port = "org.nixvmd.agent";

  # Suites run whatever the system has installed, as a login shell would find it.
  agent = pkgs.writeShellScript "nixvmd-agent" ''
    export PATH="$PATH:/run/wrappers/bin:/run/current-system/sw/bin"
    exec ${pkgs.bash}/bin/sh ${cfg.script}
  '';
in
{
  options.services.nixvmd-agent = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Whether to run nixvmd's guest agent at boot.";
    };

    script = lib.mkOption {
      type = lib.types.path;
      default = ../guest/agent.sh;
      defaultText = lib.literalExpression "<nixvmd>/guest/agent.sh";
      description = "The agent: a POSIX sh script, run with no arguments.";
    };

    path = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ ];
      example = lib.literalExpression "[ pkgs.fio pkgs.btrfs-progs ]";
      description = ''
        Extra packages on the agent's PATH. The suite's commands run with it, on top of
        the base tools and the system's own packages (/run/current-system/sw).
      '';
    };

    portTimeout = lib.mkOption {
      type = lib.types.ints.positive;
      default = 30;
      description = ''
        Seconds to wait for the ${port} port before the agent starts without it and
        falls back to the serial console (a kernel without virtio-console).
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    # Like the qemu-guest-agent module: the port's appearance starts the agent too.
    services.udev.extraRules = ''
      SUBSYSTEM=="virtio-ports", ATTR{name}=="${port}", TAG+="systemd", ENV{SYSTEMD_WANTS}+="nixvmd-agent.service"
    '';

    systemd.services.nixvmd-agent = {
      description = "nixvmd guest agent";
      wantedBy = [ "multi-user.target" ];
      after = [ "local-fs.target" ];
      wants = [ "local-fs.target" ];
      # The job may load modules and must never be interrupted by a config switch.
      restartIfChanged = false;
      unitConfig.RequiresMountsFor = [ "/tmp/shared" ];

      path =
        with pkgs;
        [
          bash
          coreutils
          util-linux
          kmod
          xfsprogs
          e2fsprogs
          gnugrep
          gnused
          gawk
          findutils
          procps
        ]
        ++ cfg.path;

      environment.NIXVMD_SHARED_DIR = "/tmp/shared";

      serviceConfig = {
        Type = "simple";
        User = "root";
        Group = "root";
        WorkingDirectory = "/root";
        # udevadm wait is event driven; the leading "-" lets the agent start without the
        # port when it never appears.
        ExecStartPre = "-${pkgs.systemd}/bin/udevadm wait --timeout=${toString cfg.portTimeout} /dev/virtio-ports/${port}";
        ExecStart = agent;
        StandardOutput = "journal+console";
        StandardError = "journal+console";
        Restart = "no";
        # The host decides when the VM ends; a long suite must not be killed by systemd.
        TimeoutStartSec = "infinity";
      };
    };
  };
}
