# module.nix — services.pdsmove.backups.<name>: a nightly `pdsmove backup` (then `prune`) of
# one account per entry, as a systemd service + timer, in the style of nixpkgs'
# services.bluesky-pds. The password is passed with LoadCredential= from a file path (agenix,
# sops-nix), never through the Nix store. Import it: imports = [ ./contrib/nixos/module.nix ];
#
# What is checked (scripts/check-nix, contrib/nixos/test/): this file is parsed by Nix 2.8
# (Debian's nix-bin) and evaluated with nix-instantiate against a stand-in for the parts of
# nixpkgs' lib it uses and stand-in declarations of the NixOS options it sets, with a sample
# configuration; the resulting services, timers, user and tmpfiles rule are checked, and the
# rendered units pass systemd-analyze verify. It has NOT been evaluated against real nixpkgs
# nor deployed on NixOS (docs/nightly-backups.md, "NixOS").
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.pdsmove;

  inherit (lib)
    concatStringsSep
    filterAttrs
    hasPrefix
    literalExpression
    mapAttrs'
    mapAttrsToList
    mkIf
    mkOption
    nameValuePair
    optional
    types
    ;

  backupOptions =
    { name, ... }:
    {
      options = {
        account = mkOption {
          type = types.str;
          example = "alice.example.com";
          description = "The account to back up: a handle or a DID.";
        };

        to = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/srv/backups/pdsmove/alice";
          description = ''
            The backup directory. `null` (the default) means
            `/var/lib/pdsmove/${name}/backups`, inside the service's state directory. Another
            directory is created for the `pdsmove` user and made writable for the service.
          '';
        };

        schedule = mkOption {
          type = types.str;
          default = "daily";
          example = "*-*-* 03:30:00";
          description = ''
            When to run, as a systemd calendar expression (`OnCalendar=`, see
            {manpage}`systemd.time(7)`). The timer adds a random delay of up to an hour and
            catches up on a run missed while the machine was off.
          '';
        };

        keep = {
          daily = mkOption {
            type = types.ints.unsigned;
            default = 7;
            description = "Keep the newest snapshot of each of the last this many days that have one.";
          };
          weekly = mkOption {
            type = types.ints.unsigned;
            default = 4;
            description = "Keep the newest snapshot of each of the last this many ISO weeks that have one.";
          };
          monthly = mkOption {
            type = types.ints.unsigned;
            default = 12;
            description = "Keep the newest snapshot of each of the last this many months that have one.";
          };
        };

        passwordFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = literalExpression ''config.age.secrets."pdsmove-alice".path'';
          description = ''
            A file holding an app password of the account (an agenix or sops-nix secret; it may
            stay owned by root, mode 0400: systemd reads it and hands the service a private copy
            through `LoadCredential=`). With it the backup also saves the preferences (an app
            password reads all but the birth date and cannot change the password, the email or
            the identity; the main password is not needed here); without it only public data is
            saved. Give the path as a string: a Nix path literal would copy the secret into the
            world-readable store.
          '';
        };

        pds = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "https://pds.example.com";
          description = "The PDS to read from (default: the one the DID document names).";
        };

        plcUrl = mkOption {
          type = types.str;
          default = "https://plc.directory";
          description = "The PLC directory.";
        };

        package = mkOption {
          type = types.package;
          default = pkgs.callPackage ./package.nix { };
          defaultText = literalExpression "pkgs.callPackage ./contrib/nixos/package.nix { }";
          description = "The pdsmove package to use.";
        };
      };
    };

  unitName = name: "pdsmove-backup-${name}";

  mkService =
    name: b:
    nameValuePair (unitName name) {
      description = "pdsmove backup ${name} (${b.account})";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];

      environment =
        {
          PDSMOVE_BIN = "${b.package}/bin/pdsmove";
          PDSMOVE_ACCOUNT = b.account;
          PDSMOVE_PLC_URL = b.plcUrl;
          PDSMOVE_KEEP_DAILY = toString b.keep.daily;
          PDSMOVE_KEEP_WEEKLY = toString b.keep.weekly;
          PDSMOVE_KEEP_MONTHLY = toString b.keep.monthly;
          PDSMOVE_STATE_DIR = "/var/lib/pdsmove/${name}/state";
        }
        // lib.optionalAttrs (b.to != null) { PDSMOVE_TO = b.to; }
        // lib.optionalAttrs (b.pds != null) { PDSMOVE_PDS = b.pds; };

      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${b.package}/libexec/pdsmove/pdsmove-backup-run";
        LoadCredential = optional (b.passwordFile != null) "password:${b.passwordFile}";
        User = "pdsmove";
        Group = "pdsmove";
        StateDirectory = "pdsmove/${name}";
        StateDirectoryMode = "0700";
        ReadWritePaths = optional (b.to != null) b.to;
        UMask = "0077";
        TimeoutStartSec = "12h";
        Nice = 10;
        IOSchedulingClass = "best-effort";
        IOSchedulingPriority = 7;

        # Hardening (as contrib/systemd/pdsmove-backup@.service): outgoing TCP, DNS and its
        # directories, nothing more.
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        PrivateUsers = true;
        NoNewPrivileges = true;
        CapabilityBoundingSet = [ "" ];
        AmbientCapabilities = [ "" ];
        ProtectClock = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged @resources"
        ];
        SystemCallErrorNumber = "EPERM";
      };
    };

  mkTimer =
    name: b:
    nameValuePair (unitName name) {
      description = "Nightly pdsmove backup ${name}";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = b.schedule;
        RandomizedDelaySec = "1h";
        Persistent = true;
      };
    };

  badNames = builtins.filter (n: builtins.match "[A-Za-z0-9_-]+" n == null) (builtins.attrNames cfg.backups);
in
{
  options.services.pdsmove = {
    backups = mkOption {
      type = types.attrsOf (types.submodule backupOptions);
      default = { };
      example = literalExpression ''
        {
          alice = {
            account = "alice.example.com";
            passwordFile = config.age.secrets."pdsmove-alice".path;
            keep = { daily = 7; weekly = 4; monthly = 12; };
          };
        }
      '';
      description = ''
        Nightly backups, one per entry: a `pdsmove-backup-<name>` service and timer that run
        `pdsmove backup`, then `pdsmove prune` with the `keep` policy. Snapshots go to
        `/var/lib/pdsmove/<name>/backups` unless `to` says otherwise; logs go to the journal
        (`journalctl -u pdsmove-backup-<name>`).
      '';
    };
  };

  config = mkIf (cfg.backups != { }) {
    assertions =
      [
        {
          assertion = badNames == [ ];
          message = "services.pdsmove.backups: names may use only letters, digits, '-' and '_': ${concatStringsSep ", " badNames}";
        }
      ]
      ++ mapAttrsToList (name: b: {
        assertion = b.passwordFile == null || (hasPrefix "/" b.passwordFile && !hasPrefix builtins.storeDir b.passwordFile);
        message = "services.pdsmove.backups.${name}.passwordFile must be an absolute path outside the Nix store (an agenix/sops-nix secret), not ${b.passwordFile}";
      }) cfg.backups
      ++ mapAttrsToList (name: b: {
        # it goes into a tmpfiles rule and ReadWritePaths=, which split at whitespace and
        # expand %-specifiers
        assertion = b.to == null || builtins.match "/[^[:space:]%]*" b.to != null;
        message = "services.pdsmove.backups.${name}.to must be an absolute path without spaces or '%', not \"${b.to}\"";
      }) cfg.backups;

    systemd.services = mapAttrs' mkService cfg.backups;
    systemd.timers = mapAttrs' mkTimer cfg.backups;

    # a backup directory outside the state directory, owned by the service's user
    systemd.tmpfiles.rules = mapAttrsToList (name: b: "d ${b.to} 0700 pdsmove pdsmove - -") (
      filterAttrs (_: b: b.to != null) cfg.backups
    );

    users.users.pdsmove = {
      group = "pdsmove";
      isSystemUser = true;
    };
    users.groups.pdsmove = { };
  };
}
