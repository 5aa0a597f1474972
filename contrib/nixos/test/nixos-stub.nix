# nixos-stub.nix — stand-in declarations of the NixOS options that contrib/nixos/module.nix
# defines (assertions, warnings, systemd.services/timers/tmpfiles.rules, users.users/groups),
# with the option names and types of nixpkgs' nixos/modules (systemd-unit-options.nix,
# systemd-lib.nix, users-groups.nix), so that a misspelt option is an error here as it is on
# NixOS. Only a subset of each submodule's options is declared, and each service gets NixOS'
# default `path` (coreutils, findutils, gnugrep, gnused, systemd) as fake store paths. The
# unit text is rendered as nixos/lib/systemd-lib.nix does (see render below).
{
  lib,
  pkgs,
  config,
  ...
}:
let
  inherit (lib)
    mkOption
    types
    optionalAttrs
    concatStringsSep
    ;

  # nixos/lib/systemd-unit-options.nix: a unit setting; lists become repeated lines
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      if builtins.any (def: builtins.isList def.value) defs then
        builtins.concatMap (def: lib.toList def.value) defs
      else
        lib.mergeEqualOption loc defs;
  };
  unitSettings = mkOption {
    type = types.attrsOf unitOption;
    default = { };
  };
  unitList = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };

  # options common to every unit kind, and the [Unit] section NixOS derives from them
  commonUnit =
    { name, config, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        description = mkOption {
          type = types.str;
          default = "";
        };
        documentation = unitList;
        requires = unitList;
        wants = unitList;
        upholds = unitList;
        after = unitList;
        before = unitList;
        bindsTo = unitList;
        partOf = unitList;
        conflicts = unitList;
        requisite = unitList;
        onFailure = unitList;
        onSuccess = unitList;
        wantedBy = unitList;
        requiredBy = unitList;
        upheldBy = unitList;
        aliases = unitList;
        unitConfig = unitSettings;
      };
      config.unitConfig =
        optionalAttrs (config.requires != [ ]) { Requires = toString config.requires; }
        // optionalAttrs (config.wants != [ ]) { Wants = toString config.wants; }
        // optionalAttrs (config.upholds != [ ]) { Upholds = toString config.upholds; }
        // optionalAttrs (config.after != [ ]) { After = toString config.after; }
        // optionalAttrs (config.before != [ ]) { Before = toString config.before; }
        // optionalAttrs (config.bindsTo != [ ]) { BindsTo = toString config.bindsTo; }
        // optionalAttrs (config.partOf != [ ]) { PartOf = toString config.partOf; }
        // optionalAttrs (config.conflicts != [ ]) { Conflicts = toString config.conflicts; }
        // optionalAttrs (config.requisite != [ ]) { Requisite = toString config.requisite; }
        // optionalAttrs (config.description != "") { Description = config.description; }
        // optionalAttrs (config.documentation != [ ]) {
          Documentation = toString config.documentation;
        }
        // optionalAttrs (config.onFailure != [ ]) { OnFailure = toString config.onFailure; }
        // optionalAttrs (config.onSuccess != [ ]) { OnSuccess = toString config.onSuccess; };
    };

  service =
    { name, config, ... }:
    {
      options = (commonUnit { inherit name config; }).options // {
        environment = mkOption {
          type = types.attrsOf (
            types.nullOr (
              types.oneOf [
                types.str
                types.path
                types.package
              ]
            )
          );
          default = { };
        };
        path = mkOption {
          type = types.listOf (types.either types.package types.str);
          default = [ ];
        };
        serviceConfig = unitSettings;
        script = mkOption {
          type = types.lines;
          default = "";
        };
        preStart = mkOption {
          type = types.lines;
          default = "";
        };
        postStart = mkOption {
          type = types.lines;
          default = "";
        };
        startAt = mkOption {
          type = types.either types.str (types.listOf types.str);
          default = [ ];
        };
        restartIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
        stopIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
        restartTriggers = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
      };
      config = (commonUnit { inherit name config; }).config // {
        # nixos/lib/systemd-lib.nix stage2ServiceConfig (there with mkAfter) and serviceConfig
        path = [
          pkgs.coreutils
          pkgs.findutils
          pkgs.gnugrep
          pkgs.gnused
          pkgs.systemd
        ];
        environment.PATH = lib.mkIf (config.path != [ ]) (
          "${lib.makeBinPath config.path}:" + concatStringsSep ":" (map (p: "${p}/sbin") config.path)
        );
      };
    };

  timer =
    { name, config, ... }:
    {
      options = (commonUnit { inherit name config; }).options // {
        timerConfig = unitSettings;
      };
      config = (commonUnit { inherit name config; }).config;
    };

  user =
    { name, ... }:
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
        };
        uid = mkOption {
          type = types.nullOr types.int;
          default = null;
        };
        isSystemUser = mkOption {
          type = types.bool;
          default = false;
        };
        isNormalUser = mkOption {
          type = types.bool;
          default = false;
        };
        group = mkOption {
          type = types.str;
          default = "";
        };
        extraGroups = unitList;
        description = mkOption {
          type = types.str;
          default = "";
        };
        home = mkOption {
          type = types.str;
          default = "/var/empty";
        };
        createHome = mkOption {
          type = types.bool;
          default = false;
        };
      };
    };

  group =
    { name, ... }:
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
        };
        gid = mkOption {
          type = types.nullOr types.int;
          default = null;
        };
        members = unitList;
      };
    };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    systemd.services = mkOption {
      type = types.attrsOf (types.submodule service);
      default = { };
    };
    systemd.timers = mkOption {
      type = types.attrsOf (types.submodule timer);
      default = { };
    };
    systemd.tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    users.users = mkOption {
      type = types.attrsOf (types.submodule user);
      default = { };
    };
    users.groups = mkOption {
      type = types.attrsOf (types.submodule group);
      default = { };
    };
  };

  # the two users-groups.nix assertions that concern a system user, and one of our own: the
  # user's group must be declared (NixOS' activation script fails otherwise)
  config.assertions = lib.mapAttrsToList (n: u: {
    assertion = (u.isSystemUser || u.isNormalUser) && !(u.isSystemUser && u.isNormalUser);
    message = "Exactly one of users.users.${n}.isSystemUser and users.users.${n}.isNormalUser must be set.";
  }) config.users.users
  ++ lib.mapAttrsToList (n: u: {
    assertion = u.group != "";
    message = "users.users.${n}.group is unset.";
  }) config.users.users
  ++ lib.mapAttrsToList (n: u: {
    assertion = u.group == "" || config.users.groups ? ${u.group};
    message = "users.users.${n}.group = \"${u.group}\" names a group that users.groups does not define.";
  }) config.users.users;
}
