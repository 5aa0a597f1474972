# package.nix — pdsmove for Nix: the CLI built with the pinned Zig (0.14) from this checkout,
# plus the nightly wrapper (libexec/pdsmove/pdsmove-backup-run) that module.nix runs.
# Checked by scripts/check-nix only as far as Nix 2.8 parses it and module.nix's evaluation
# calls it (with stand-in dependencies and a stand-in mkDerivation: its version, source filter
# and install step are checked). It has NOT been built, nor evaluated against real nixpkgs;
# see docs/nightly-backups.md.
# Use: pkgs.callPackage ./contrib/nixos/package.nix { }
{
  lib,
  stdenv,
  zig_0_14,
  pkg-config,
  curl,
  libarchive,
  sqlite,
  openssl,
  secp256k1,
  jansson,
}:

stdenv.mkDerivation {
  pname = "pdsmove";
  version = "0.1.0";

  # The repository root without .git, editor files (cleanSource) and what .gitignore leaves
  # out: Zig's cache and output directories (GiBs in a working checkout: copying them into
  # the store would make every evaluation slow and every build's source hash change), tmp/
  # and journal databases.
  src = lib.cleanSourceWith {
    name = "pdsmove-source";
    src = lib.cleanSource ../..;
    filter =
      path: type:
      let
        base = baseNameOf path;
      in
      !(builtins.elem base [
        ".zig-cache"
        "zig-cache"
        "zig-out"
      ])
      && toString path != toString ../.. + "/tmp"
      && !lib.hasSuffix ".journal.sqlite" base;
  };

  nativeBuildInputs = [
    # the hook runs `zig build` with -Dcpu=baseline and a release mode, and installs into $out
    zig_0_14.hook
    pkg-config
  ];

  buildInputs = [
    curl
    libarchive
    sqlite
    openssl
    secp256k1
    jansson
  ];

  # The unit tests need Criterion and the integration tests a Node testbed: run them from the
  # checkout (scripts/test), not in the sandbox.
  doCheck = false;

  postInstall = ''
    install -Dm755 contrib/systemd/pdsmove-backup-run $out/libexec/pdsmove/pdsmove-backup-run
    install -Dm644 contrib/systemd/example.conf $out/share/doc/pdsmove/example.conf
  '';

  meta = {
    description = "Move, back up and restore AT Protocol (Bluesky) accounts between PDSes";
    # no `license` yet: the repository has no licence file
    mainProgram = "pdsmove";
    platforms = lib.platforms.linux;
  };
}
