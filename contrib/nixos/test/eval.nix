# eval.nix — evaluates contrib/nixos/module.nix with the stand-in lib (mini-lib.nix), the
# stand-in NixOS options (nixos-stub.nix) and a configuration (sample-config.nix unless one
# is given), and returns what the module produced, for scripts/check-nix:
#
#   nix-instantiate --store dummy:// --eval --strict --json contrib/nixos/test/eval.nix \
#     [--arg module /path/to/module.nix] [--arg configuration '{ ... }']
#
# `pkgs` is a stand-in too: callPackage calls package.nix with fake dependencies whose
# mkDerivation returns a derivation-like set with a made-up store path; nothing is built and
# nothing is written to a store (the dummy store refuses writes).
{
  module ? ../module.nix,
  configuration ? ./sample-config.nix,
}:
let
  lib = import ./mini-lib.nix;
  inherit (lib) mapAttrs mapAttrsToList concatStringsSep;
  inherit (builtins) attrNames filter;

  fakeStorePath =
    name: "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
  fakeDrv = name: {
    type = "derivation";
    inherit name;
    outPath = fakeStorePath name;
  };

  pkgs = rec {
    inherit lib;
    # nixpkgs' callPackage: the function's arguments from pkgs, overridden by the set given;
    # an argument pkgs does not have is an error
    callPackage =
      fn: overrides:
      let
        f = if builtins.isPath fn then import fn else fn;
        wanted = builtins.functionArgs f;
        given = mapAttrs (
          n: _: overrides.${n} or pkgs.${n} or (throw "callPackage: no package `${n}' in the stand-in pkgs")
        ) (lib.filterAttrs (n: hasDefault: !hasDefault || overrides ? ${n} || pkgs ? ${n}) wanted);
      in
      f given;
    stdenv.mkDerivation =
      attrs:
      let
        name =
          attrs.name or (
            if attrs ? pname && attrs ? version then
              "${attrs.pname}-${attrs.version}"
            else
              throw "mkDerivation: neither name nor pname and version"
          );
      in
      attrs
      // {
        type = "derivation";
        inherit name;
        outPath = fakeStorePath name;
        drvPath = fakeStorePath "${name}.drv";
      };
    zig_0_14 = fakeDrv "zig-0.14.1" // {
      version = "0.14.1";
      hook = fakeDrv "zig-hook-0.14.1";
    };
    pkg-config = fakeDrv "pkg-config";
    curl = fakeDrv "curl";
    libarchive = fakeDrv "libarchive";
    sqlite = fakeDrv "sqlite";
    openssl = fakeDrv "openssl";
    secp256k1 = fakeDrv "secp256k1";
    jansson = fakeDrv "jansson";
    coreutils = fakeDrv "coreutils";
    findutils = fakeDrv "findutils";
    gnugrep = fakeDrv "gnugrep";
    gnused = fakeDrv "gnused";
    systemd = fakeDrv "systemd";
  };

  eval = lib.evalModules {
    args = { inherit pkgs; };
    modules = [
      ./nixos-stub.nix
      module
    ]
    ++ lib.toList configuration;
  };
  cfg = eval.config;

  # nixos/lib/systemd-lib.nix: toOption, attrsToSection, commonUnitText, serviceToUnit,
  # timerToUnit (without the X-* lines NixOS adds for switch-to-configuration)
  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;
  attrsToSection =
    as:
    lib.concatMapStrings (x: x) (
      builtins.concatLists (
        mapAttrsToList (
          name: value: map (x: "${name}=${toOption x}\n") (if builtins.isList value then value else [ value ])
        ) as
      )
    );
  commonUnitText =
    def: lines:
    "[Unit]\n"
    + attrsToSection def.unitConfig
    + "\n"
    + lines
    + (
      if def.wantedBy != [ ] then
        "\n[Install]\nWantedBy=${concatStringsSep " " def.wantedBy}\n"
      else
        ""
    );
  serviceText =
    def:
    commonUnitText def (
      "[Service]\n"
      + lib.concatMapStrings (
        n:
        if def.environment.${n} != null then
          "Environment=${builtins.toJSON "${n}=${toString def.environment.${n}}"}\n"
        else
          ""
      ) (attrNames def.environment)
      + attrsToSection def.serviceConfig
    );
  timerText = def: commonUnitText def ("[Timer]\n" + attrsToSection def.timerConfig);

  # relative path -> file type, for the source filter (scripts/check-nix knows the answers)
  srcProbes = {
    "build.zig" = "regular";
    "build.zig.zon" = "regular";
    "src" = "directory";
    "src/cli/main.c" = "regular";
    "include" = "directory";
    "contrib/systemd/pdsmove-backup-run" = "regular";
    "contrib/systemd/example.conf" = "regular";
    "docs/tmp" = "directory";
    ".git" = "directory";
    ".zig-cache" = "directory";
    "zig-out" = "directory";
    "tmp" = "directory";
    "x.journal.sqlite" = "regular";
    "src/a.c~" = "regular";
    "result" = "symlink";
  };

  backups = cfg.services.pdsmove.backups;
  packages = mapAttrs (n: b: b.package) backups;
in
{
  failedAssertions = map (a: a.message) (filter (a: !a.assertion) cfg.assertions);
  inherit (cfg) warnings;
  # the options as the module's users see them (defaults filled in), without the package
  backups = mapAttrs (n: b: removeAttrs b [ "package" ]) backups;
  services = mapAttrs (n: s: {
    inherit (s)
      description
      wants
      after
      wantedBy
      environment
      serviceConfig
      enable
      ;
  }) cfg.systemd.services;
  timers = mapAttrs (n: t: {
    inherit (t)
      description
      wantedBy
      timerConfig
      enable
      ;
  }) cfg.systemd.timers;
  tmpfilesRules = cfg.systemd.tmpfiles.rules;
  users = mapAttrs (n: u: {
    inherit (u)
      name
      group
      isSystemUser
      isNormalUser
      home
      ;
  }) cfg.users.users;
  groups = attrNames cfg.users.groups;
  units =
    lib.mapAttrs' (n: s: lib.nameValuePair "${n}.service" (serviceText s)) cfg.systemd.services
    // lib.mapAttrs' (n: t: lib.nameValuePair "${n}.timer" (timerText t)) cfg.systemd.timers;
  # each backup's package: what package.nix handed to mkDerivation. Its `src` appears only
  # as its root (a string: a path in the JSON would be copied to the store) and as the
  # source filter's answer for a few paths under the root (as builtins.path calls it:
  # absolute path strings and a file type).
  packages = mapAttrs (n: p: {
    inherit (p)
      name
      pname
      version
      postInstall
      doCheck
      ;
    storePath = p.outPath;
    srcRoot = toString p.src.origSrc;
    srcName = p.src.name;
    srcIncludes = lib.mapAttrs (
      rel: type: p.src.filter "${toString p.src.origSrc}/${rel}" type
    ) srcProbes;
    nativeBuildInputs = map (d: d.name) p.nativeBuildInputs;
    buildInputs = map (d: d.name) p.buildInputs;
    mainProgram = p.meta.mainProgram;
    platforms = p.meta.platforms;
  }) packages;
}
