# lib-tests.nix — checks that the stand-in lib (mini-lib.nix) gives nixpkgs' answers: the
# examples of nixpkgs' lib documentation for the functions module.nix uses, and the module
# system behaviour the check relies on (defaults, submodule `name`, mkIf, priorities, type
# errors, undeclared options). Evaluates to the list of failed cases ([] = all passed).
# (An error that builtins.tryEval cannot catch, like mkOption's refusal of a misspelt
# attribute, is checked by scripts/check-nix itself.)
#
#   nix-instantiate --store dummy:// --eval --strict --json contrib/nixos/test/lib-tests.nix
let
  lib = import ./mini-lib.nix;
  inherit (lib) types mkOption;

  # true when evaluating x (deeply) fails with an error that `throw` raises
  fails = x: !(builtins.tryEval (builtins.deepSeq x x)).success;

  eval =
    modules:
    (lib.evalModules {
      inherit modules;
    }).config;

  # a module like module.nix: options.<name> = attrsOf (submodule { name, ... }: ...)
  declares = {
    options.things = mkOption {
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              label = mkOption {
                type = types.str;
                default = "thing-${name}";
              };
              size = mkOption {
                type = types.ints.unsigned;
                default = 1;
              };
              path = mkOption {
                type = types.nullOr types.str;
                default = null;
              };
              nested.depth = mkOption {
                type = types.int;
                default = 2;
              };
              required = mkOption { type = types.str; };
            };
          }
        )
      );
      default = { };
    };
    options.flag = mkOption {
      type = types.bool;
      default = false;
    };
    options.list = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
  };

  cases = {
    # lib/attrsets.nix documentation examples
    mapAttrs' =
      lib.mapAttrs' (name: value: lib.nameValuePair ("foo_" + name) ("bar-" + value)) {
        x = "a";
        y = "b";
      } == {
        foo_x = "bar-a";
        foo_y = "bar-b";
      };
    mapAttrsToList =
      lib.mapAttrsToList (name: value: name + value) {
        x = "a";
        y = "b";
      } == [
        "xa"
        "yb"
      ];
    filterAttrs =
      lib.filterAttrs (n: v: n == "foo") {
        foo = 1;
        bar = 2;
      } == {
        foo = 1;
      };
    nameValuePair = lib.nameValuePair "some" 6 == {
      name = "some";
      value = 6;
    };
    optionalAttrs-true = lib.optionalAttrs true { foo = "bar"; } == { foo = "bar"; };
    optionalAttrs-false = lib.optionalAttrs false { foo = "bar"; } == { };
    # lib/lists.nix
    optional-true = lib.optional true "foo" == [ "foo" ];
    optional-false = lib.optional false "foo" == [ ];
    # lib/strings.nix
    concatStringsSep =
      lib.concatStringsSep "/" [
        "usr"
        "local"
        "bin"
      ] == "usr/local/bin";
    hasPrefix-yes = lib.hasPrefix "foo" "foobar";
    hasPrefix-no = !lib.hasPrefix "foo" "barfoo";
    hasSuffix-yes = lib.hasSuffix "foo" "barfoo";
    hasSuffix-no = !lib.hasSuffix "foo" "foobar";
    # lib/options.nix
    literalExpression = lib.literalExpression "pkgs.hello" == {
      _type = "literalExpression";
      text = "pkgs.hello";
    };
    literalExpression-not-string = fails (lib.literalExpression 1);
    # lib/types.nix checks
    unsigned-0 = types.ints.unsigned.check 0;
    unsigned-neg = !types.ints.unsigned.check (-1);
    str-not-path = !types.str.check ./lib-tests.nix;
    str-not-null = !types.str.check null;
    nullOr-null = (types.nullOr types.str).check null;
    package-drv = types.package.check {
      type = "derivation";
      outPath = "/nix/store/00000000000000000000000000000000-x";
    };
    package-store-string = types.package.check "/nix/store/00000000000000000000000000000000-x";
    package-not-other-string = !types.package.check "/usr/bin/x";

    # lib/modules.nix behaviour
    defaults-and-name =
      (eval [
        declares
        { things.a.required = "r"; }
      ]).things.a == {
        label = "thing-a";
        size = 1;
        path = null;
        nested.depth = 2;
        required = "r";
      };
    definition-wins =
      (eval [
        declares
        {
          things.a = {
            required = "r";
            size = 5;
            nested.depth = 3;
          };
        }
      ]).things.a.size == 5;
    nested-group =
      (eval [
        declares
        {
          things.a = {
            required = "r";
            nested.depth = 3;
          };
        }
      ]).things.a.nested.depth == 3;
    two-modules-merge =
      builtins.attrNames
        (eval [
          declares
          { things.a.required = "r"; }
          { things.b.required = "s"; }
        ]).things == [
        "a"
        "b"
      ];
    list-concatenated =
      (eval [
        declares
        { list = [ "x" ]; }
        { list = [ "y" ]; }
      ]).list == [
        "x"
        "y"
      ];
    mkIf-false-drops =
      (eval [
        declares
        { things.a = lib.mkIf false { required = "r"; }; }
      ]).things == { };
    mkIf-true-keeps =
      (eval [
        declares
        (lib.mkIf true { things.a.required = "r"; })
      ]).things.a.required == "r";
    mkIf-non-bool = fails
      (eval [
        declares
        { flag = lib.mkIf "yes" true; }
      ]).flag;
    mkForce-wins =
      (eval [
        declares
        { flag = lib.mkForce false; }
        { flag = true; }
      ]).flag == false;
    mkDefault-loses =
      (eval [
        declares
        { flag = lib.mkDefault false; }
        { flag = true; }
      ]).flag == true;
    conflicting-str = fails
      (eval [
        declares
        { things.a.required = "r"; }
        { things.a.required = "s"; }
      ]).things.a.required;
    undeclared-option = fails
      (eval [
        declares
        {
          things.a = {
            required = "r";
            lable = "typo";
          };
        }
      ]).things.a;
    undeclared-top = fails
      (eval [
        declares
        { thigns = { }; }
      ]).flag;
    wrong-type = fails
      (eval [
        declares
        {
          things.a = {
            required = "r";
            size = -1;
          };
        }
      ]).things.a.size;
    path-for-str = fails
      (eval [
        declares
        {
          things.a = {
            required = "r";
            path = ./lib-tests.nix;
          };
        }
      ]).things.a.path;
    no-value = fails
      (eval [
        declares
        { things.a = { }; }
      ]).things.a.required;
    function-module-args =
      (eval [
        declares
        (
          { config, lib, ... }:
          {
            things.a.required = lib.concatStringsSep "," [ (toString config.flag) ];
          }
        )
        { flag = true; }
      ]).things.a.required == "1";
  };
in
builtins.filter (n: !cases.${n}) (builtins.attrNames cases)
