# mini-lib.nix — a small stand-in for the parts of nixpkgs' `lib` that contrib/nixos/module.nix
# and package.nix use, plus a small module evaluator (`evalModules`), so that the module can
# be evaluated with plain Nix where nixpkgs is not available (scripts/check-nix).
#
# Written from nixpkgs' lib/{options,types,attrsets,lists,strings,modules}.nix: the functions
# behave like nixpkgs' for what the module does with them (same names, same argument order,
# same results; mkOption refuses unknown attributes; a type check failure, an undeclared
# option, an option used without a value or two different values for a `str` option are
# errors). It is NOT nixpkgs: the module evaluator knows only the property wrappers mkIf,
# mkMerge and mkOverride (mkDefault, mkForce), types only the few listed below, no `imports`,
# no freeform types, no option-declaration merging. Passing this check says the module
# evaluates against this stand-in; it does not prove it evaluates against real nixpkgs.
let
  inherit (builtins)
    all
    any
    attrNames
    concatMap
    elemAt
    filter
    foldl'
    functionArgs
    head
    isAttrs
    isBool
    isFunction
    isInt
    isList
    isPath
    isString
    length
    listToAttrs
    mapAttrs
    typeOf
    ;

  lib = rec {
    # --- trivial ---------------------------------------------------------------------------
    id = x: x;
    isType = t: x: (x._type or "") == t;
    min = a: b: if a < b then a else b;

    # --- lists (lib/lists.nix) -----------------------------------------------------------------
    optional = cond: elem: if cond then [ elem ] else [ ];
    optionals = cond: elems: if cond then elems else [ ];
    toList = x: if isList x then x else [ x ];
    last = list: assert list != [ ]; elemAt list (length list - 1);
    imap1 = f: list: builtins.genList (n: f (n + 1) (elemAt list n)) (length list);

    # --- attrsets (lib/attrsets.nix) -----------------------------------------------------------
    nameValuePair = name: value: { inherit name value; };
    mapAttrs = builtins.mapAttrs;
    mapAttrsToList = f: attrs: builtins.attrValues (mapAttrs f attrs);
    mapAttrs' = f: set: listToAttrs (mapAttrsToList f set);
    filterAttrs =
      pred: set: removeAttrs set (filter (name: !pred name set.${name}) (attrNames set));
    optionalAttrs = cond: as: if cond then as else { };
    isDerivation = value: (value.type or null) == "derivation";

    # --- strings (lib/strings.nix) -------------------------------------------------------------
    concatStringsSep = builtins.concatStringsSep;
    concatMapStrings = f: list: builtins.concatStringsSep "" (map f list);
    # nixpkgs only warns about a path prefix; the stand-in refuses it outright
    hasPrefix =
      pref: str:
      if isPath pref then
        throw "lib.strings.hasPrefix: the first argument is a path; give a string"
      else
        builtins.substring 0 (builtins.stringLength pref) str == pref;
    isStringLike = x: isString x || isPath x || x ? outPath || x ? __toString;
    isStorePath =
      x:
      if isStringLike x then
        let
          str = toString x;
        in
        builtins.substring 0 1 str == "/" && dirOf str == builtins.storeDir
      else
        false;
    makeBinPath = pkgs: concatStringsSep ":" (map (p: "${p}/bin") pkgs);

    hasSuffix =
      suffix: content:
      let
        lenContent = builtins.stringLength content;
        lenSuffix = builtins.stringLength suffix;
      in
      lenContent >= lenSuffix
      && builtins.substring (lenContent - lenSuffix) lenContent content == suffix;

    # --- sources (lib/sources.nix), meta (only what package.nix uses) ---------------------------
    # cleanSourceFilter is nixpkgs'; cleanSourceWith composes filters as nixpkgs' does but
    # has no outPath: nixpkgs copies the filtered tree to the store when it is used, the
    # stand-in never copies anything (eval.nix calls the filter on sample paths instead).
    cleanSourceFilter =
      name: type:
      let
        baseName = baseNameOf (toString name);
      in
      !(
        (
          baseName == ".git"
          || type == "directory" && (baseName == ".svn" || baseName == "CVS" || baseName == ".hg")
        )
        || hasSuffix "~" baseName
        || builtins.match "^\\.sw[a-z]$" baseName != null
        || builtins.match "^\\..*\\.sw[a-z]$" baseName != null
        || hasSuffix ".o" baseName
        || hasSuffix ".so" baseName
        || (type == "symlink" && hasPrefix "result" baseName)
      );
    cleanSourceWith =
      {
        filter ? _path: _type: true,
        src,
        name ? null,
      }:
      let
        isFiltered = src ? _isLibCleanSourceWith;
        orig = {
          origSrc =
            if isFiltered then
              src.origSrc
            else if isPath src then
              src
            else
              throw "lib.cleanSourceWith: src is not a path (the stand-in takes paths only)";
          filter = if isFiltered then src.filter else _: _: true;
          name = if isFiltered then src.name else "source";
        };
      in
      {
        _isLibCleanSourceWith = true;
        inherit (orig) origSrc;
        filter = path: type: filter path type && orig.filter path type;
        name = if name != null then name else orig.name;
      };
    cleanSource = src: cleanSourceWith {
      filter = cleanSourceFilter;
      inherit src;
    };
    platforms.linux = [
      "aarch64-linux"
      "x86_64-linux"
    ];

    # --- options (lib/options.nix) -------------------------------------------------------------
    # Same formal arguments as nixpkgs' mkOption: a misspelt attribute is an error.
    mkOption =
      {
        default ? null,
        defaultText ? null,
        example ? null,
        description ? null,
        relatedPackages ? null,
        type ? null,
        apply ? null,
        internal ? null,
        visible ? null,
        readOnly ? null,
      }@attrs:
      attrs // { _type = "option"; };
    isOption = isType "option";
    literalExpression =
      text:
      if !isString text then
        throw "literalExpression expects a string."
      else
        {
          _type = "literalExpression";
          inherit text;
        };
    showOption = parts: concatStringsSep "." parts;

    # A short, safe rendering of a definition for error messages (never copies a path to the
    # store, never forces more than the top of the value).
    showValue =
      v:
      if isString v then
        builtins.toJSON v
      else if isPath v then
        "path ${toString v}"
      else if isInt v || isBool v || v == null then
        builtins.toJSON v
      else
        "a ${typeOf v}";
    showDefs = defs: concatMapStrings (d: "\n- In `${d.file}': ${showValue d.value}") defs;

    mergeEqualOption =
      loc: defs:
      if defs == [ ] then
        abort "mergeEqualOption: no definitions"
      else if length defs == 1 then
        (head defs).value
      else
        (foldl' (
          first: def:
          if def.value != first.value then
            throw "The option `${showOption loc}' has conflicting definition values:${
              showDefs [
                first
                def
              ]
            }"
          else
            first
        ) (head defs) (builtins.tail defs)).value;
    mergeOneOption =
      loc: defs:
      if length defs == 1 then
        (head defs).value
      else
        throw "The option `${showOption loc}' is defined multiple times while it's expected to be unique.\nDefinition values:${showDefs defs}";

    # --- properties (lib/modules.nix) ----------------------------------------------------------
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkOptionDefault = mkOverride 1500;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;

    # mkMerge and mkIf taken apart into the list of plain definitions they stand for
    dischargeProperties =
      def:
      if (def._type or "") == "merge" then
        concatMap dischargeProperties def.contents
      else if (def._type or "") == "if" then
        if isBool def.condition then
          if def.condition then dischargeProperties def.content else [ ]
        else
          throw "‘mkIf’ called with a non-Boolean condition"
      else
        [ def ];

    # an attribute set under mkIf/mkMerge/mkOverride: the wrapper moved onto each attribute
    pushDownProperties =
      cfg:
      if (cfg._type or "") == "merge" then
        concatMap pushDownProperties cfg.contents
      else if (cfg._type or "") == "if" then
        map (mapAttrs (n: v: mkIf cfg.condition v)) (pushDownProperties cfg.content)
      else if (cfg._type or "") == "override" then
        map (mapAttrs (n: v: mkOverride cfg.priority v)) (pushDownProperties cfg.content)
      else
        [ cfg ];

    # The definitions of one option merged by its type, as nixpkgs' mergeDefinitions:
    # properties discharged, only the highest-priority definitions kept, each type-checked.
    mergeDefinitions =
      loc: type: defs:
      let
        discharged = concatMap (
          def:
          map (v: {
            inherit (def) file;
            value = v;
          }) (dischargeProperties def.value)
        ) defs;
        prio = def: if (def.value._type or "") == "override" then def.value.priority else 100;
        highest = foldl' (m: d: min m (prio d)) 9999 discharged;
        strip =
          def:
          if (def.value._type or "") == "override" then
            strip {
              inherit (def) file;
              value = def.value.content;
            }
          else
            def;
        kept = map strip (filter (d: prio d == highest) discharged);
        checked = map (
          def:
          if type.check def.value then
            def
          else
            throw "A definition for option `${showOption loc}' is not of type `${type.description}'. Definition values:${showDefs [ def ]}"
        ) kept;
      in
      {
        isDefined = kept != [ ];
        mergedValue = type.merge loc checked;
      };

    # --- types (lib/types.nix) -----------------------------------------------------------------
    mkOptionType =
      {
        name,
        description ? name,
        check ? (x: true),
        merge ? mergeEqualOption,
      }:
      {
        _type = "option-type";
        inherit
          name
          description
          check
          merge
          ;
      };

    types = rec {
      addCheck = t: f: t // { check = x: t.check x && f x; };

      unspecified = mkOptionType {
        name = "unspecified";
        merge =
          loc: defs:
          if length defs == 1 then
            (head defs).value
          else if all (d: isList d.value) defs then
            concatMap (d: d.value) defs
          else
            mergeEqualOption loc defs;
      };
      anything = unspecified // {
        name = "anything";
      };
      bool = mkOptionType {
        name = "bool";
        description = "boolean";
        check = isBool;
      };
      int = mkOptionType {
        name = "int";
        description = "signed integer";
        check = isInt;
      };
      ints = {
        unsigned = addCheck int (x: x >= 0) // {
          name = "unsignedInt";
          description = "unsigned integer, meaning >=0";
        };
        positive = addCheck int (x: x > 0) // {
          name = "positiveInt";
          description = "positive integer, meaning >0";
        };
      };
      str = mkOptionType {
        name = "str";
        description = "string";
        check = isString;
      };
      separatedString =
        sep:
        mkOptionType {
          name = "separatedString";
          description = "strings concatenated with ${builtins.toJSON sep}";
          check = isString;
          merge = loc: defs: concatStringsSep sep (map (d: d.value) defs);
        };
      lines = separatedString "\n";
      # a string, or a path: no path literal is copied to the store by the check
      path = mkOptionType {
        name = "path";
        description = "absolute path";
        check = x: isStringLike x && builtins.substring 0 1 (toString x) == "/";
      };
      package = mkOptionType {
        name = "package";
        check = x: isDerivation x || isStorePath x;
        merge = mergeOneOption;
      };
      attrs = mkOptionType {
        name = "attrs";
        description = "attribute set";
        check = isAttrs;
        merge = loc: foldl' (res: def: res // def.value) { };
      };

      nullOr =
        elemType:
        mkOptionType {
          name = "nullOr";
          description = "null or ${elemType.description}";
          check = x: x == null || elemType.check x;
          merge =
            loc: defs:
            let
              nrNulls = length (filter (def: def.value == null) defs);
            in
            if nrNulls == length defs then
              null
            else if nrNulls != 0 then
              throw "The option `${showOption loc}` is defined both null and not null."
            else
              elemType.merge loc defs;
        };

      either =
        t1: t2:
        mkOptionType {
          name = "either";
          description = "${t1.description} or ${t2.description}";
          check = x: t1.check x || t2.check x;
          merge =
            loc: defs:
            if all (d: t1.check d.value) defs then
              t1.merge loc defs
            else if all (d: t2.check d.value) defs then
              t2.merge loc defs
            else
              mergeOneOption loc defs;
        };
      oneOf =
        ts:
        if ts == [ ] then
          throw "types.oneOf needs at least one type"
        else
          foldl' either (head ts) (builtins.tail ts);

      listOf =
        elemType:
        mkOptionType {
          name = "listOf";
          description = "list of ${elemType.description}";
          check = isList;
          merge =
            loc: defs:
            map (x: x.mergedValue) (
              filter (x: x.isDefined) (
                builtins.concatLists (
                  imap1 (
                    n: def:
                    imap1 (
                      m: v:
                      mergeDefinitions (loc ++ [ "[definition ${toString n}-entry ${toString m}]" ]) elemType [
                        {
                          inherit (def) file;
                          value = v;
                        }
                      ]
                    ) def.value
                  ) defs
                )
              )
            );
        };

      attrsOf =
        elemType:
        mkOptionType {
          name = "attrsOf";
          description = "attribute set of ${elemType.description}";
          check = isAttrs;
          merge =
            loc: defs:
            let
              pushed = map (
                def:
                mapAttrs (n: v: {
                  inherit (def) file;
                  value = v;
                }) def.value
              ) defs;
              merged = builtins.zipAttrsWith (n: ds: mergeDefinitions (loc ++ [ n ]) elemType ds) pushed;
            in
            mapAttrs (n: r: r.mergedValue) (filterAttrs (n: r: r.isDefined) merged);
        };

      # types.submodule: the definitions are the `config` of further modules, evaluated
      # together with the given ones; `name` is the attribute name (last element of loc).
      submoduleWith =
        {
          modules,
          shorthandOnlyDefinesConfig ? false,
        }:
        mkOptionType {
          name = "submodule";
          check = x: isAttrs x || isFunction x || isPath x;
          merge =
            loc: defs:
            (evalModules {
              prefix = loc;
              args = {
                name = last loc;
              };
              modules =
                modules
                ++ map (
                  def:
                  if isAttrs def.value && shorthandOnlyDefinesConfig then
                    {
                      _file = def.file;
                      config = def.value;
                    }
                  else
                    def.value
                ) defs;
            }).config;
        };
      submodule =
        modules:
        submoduleWith {
          shorthandOnlyDefinesConfig = true;
          modules = toList modules;
        };
    };

    # --- the module evaluator (a small lib.evalModules) -----------------------------------------
    # evalModules { modules; args ? {}; prefix ? [] } -> { config; options; }
    # A module is an attribute set ({ options; config; } or a plain config), a function taking
    # some of { config, options, lib, name, pkgs, ... } (whatever `args` holds), or a path to
    # one. Definitions of undeclared options are errors, as in nixpkgs (_module.check).
    evalModules =
      {
        modules,
        args ? { },
        prefix ? [ ],
      }:
      let
        allArgs = args // {
          inherit lib config;
          options = declared;
        };
        where = loc: if loc == [ ] then "the top level" else "`${showOption loc}'";
        load =
          n: m:
          let
            file = if isPath m then toString m else m._file or "<module ${toString n} at ${where prefix}>";
            f = if isPath m then import m else m;
            called =
              if isFunction f then
                f (
                  mapAttrs (
                    a: _:
                    allArgs.${a}
                      or (throw "module ${file} asks for the argument `${a}', which this evaluation does not provide")
                  ) (filterAttrs (a: hasDefault: !hasDefault || allArgs ? ${a}) (functionArgs f))
                )
              else
                f;
            known = [
              "_file"
              "key"
              "imports"
              "options"
              "config"
              "meta"
            ];
            structured = called ? options || called ? config;
            extra = filter (k: !builtins.elem k known) (attrNames called);
          in
          if !isAttrs called then
            throw "module ${file} is not an attribute set or a function returning one"
          else if (called.imports or [ ]) != [ ] then
            throw "module ${file}: `imports' is not supported by this stand-in evaluator"
          else if structured && extra != [ ] then
            throw "module ${file} has an unsupported top-level attribute `${head extra}' (with `options' or `config', only ${concatStringsSep ", " known})"
          else
            {
              inherit file;
              options = called.options or { };
              config =
                if structured then
                  called.config or { }
                else
                  removeAttrs called [
                    "_file"
                    "key"
                    "imports"
                    "meta"
                  ];
            };
        loaded = imap1 load modules;

        # option declarations of all modules in one tree; the same option twice is an error
        mergeDecls =
          loc: a: b:
          a
          // mapAttrs (
            n: v:
            if !(a ? ${n}) then
              v
            else if isOption v || isOption a.${n} then
              throw "The option `${showOption (loc ++ [ n ])}' is declared more than once (not supported by this stand-in)"
            else
              mergeDecls (loc ++ [ n ]) a.${n} v
          ) b;
        declared = foldl' (acc: m: mergeDecls prefix acc m.options) { } loaded;

        config = evalTree prefix declared (
          map (m: {
            inherit (m) file;
            value = m.config;
          }) loaded
        );
      in
      {
        inherit config;
        options = declared;
      };

    # one level of the option tree: every declared option or option group, from the
    # definitions given for it; a definition for anything undeclared is an error
    evalTree =
      loc: decls: defs:
      let
        pushed = concatMap (
          def:
          map (v: {
            inherit (def) file;
            value = v;
          }) (pushDownProperties def.value)
        ) defs;
        checked = map (
          def:
          if isAttrs def.value && !(def.value ? _type) then
            def
          else
            throw "The option set `${showOption loc}' is defined as ${showValue def.value} in `${def.file}', not as an attribute set of options"
        ) pushed;
        unknown = concatMap (
          def:
          map (n: {
            inherit n;
            inherit (def) file;
          }) (filter (n: !(decls ? ${n})) (attrNames def.value))
        ) checked;
        defsFor =
          n:
          concatMap (
            def:
            optional (def.value ? ${n}) {
              inherit (def) file;
              value = def.value.${n};
            }
          ) checked;
        result = mapAttrs (
          n: d:
          if isOption d then
            evalOption (loc ++ [ n ]) d (defsFor n)
          else if isAttrs d && !(d ? _type) then
            evalTree (loc ++ [ n ]) d (defsFor n)
          else
            throw "`${showOption (loc ++ [ n ])}' is declared with something that is not an option (use mkOption)"
        ) decls;
      in
      if unknown != [ ] then
        throw "The option `${showOption (loc ++ [ (head unknown).n ])}' does not exist. Definition in `${(head unknown).file}'."
      else
        result;

    evalOption =
      loc: opt: defs:
      let
        type = if (opt.type or null) == null then types.unspecified else opt.type;
        withDefault =
          defs
          ++ optional (opt ? default) {
            file = "the default of `${showOption loc}'";
            value = mkOptionDefault opt.default;
          };
        res = mergeDefinitions loc type withDefault;
        value =
          if res.isDefined then
            res.mergedValue
          else
            throw "The option `${showOption loc}' was accessed but has no value defined. Try setting the option.";
      in
      if (opt.apply or null) != null then opt.apply value else value;
  };
in
lib
