#!/usr/bin/env python3
"""check_eval.py -- checks what eval.nix made of module.nix with sample-config.nix.

    check_eval.py EVAL.json --repo ROOT [--units-dir DIR] [--wrapper-tmp DIR]

EVAL.json is `nix-instantiate --eval --strict --json contrib/nixos/test/eval.nix`'s output,
ROOT the checkout whose contrib/nixos was evaluated. Checks, for each backup of the sample:
one service and one timer with the expected names; ExecStart is the package's wrapper, which
package.nix installs from contrib/systemd; the password reaches the service only through
LoadCredential= with the configured path (never a store path, never in the environment);
the [Service] settings match contrib/systemd/pdsmove-backup@.service's, DynamicUser= aside
(the module uses a fixed user); the timer's OnCalendar/RandomizedDelaySec/Persistent; the
tmpfiles rule, user and group; no failed assertion; the package's version, source filter and
install step. With --units-dir, writes the rendered units there (and the wrapper at the
ExecStart path below it) for `systemd-analyze verify --root`. With --wrapper-tmp, runs the
wrapper with each service's environment, a fake pdsmove and a fake credential directory, and
checks the pdsmove command lines. Prints one line per failed check; exit 1 if any failed.
"""
import json
import os
import re
import shutil
import subprocess
import sys

# what sample-config.nix sets
SAMPLE = {
    "alice": {
        "account": "alice.example.com",
        "to": None,
        "schedule": "daily",
        "keep": {"daily": 7, "weekly": 4, "monthly": 12},
        "passwordFile": "/run/agenix/alice-pw",
        "pds": None,
    },
    "bob": {
        "account": "did:plc:bobbobbobbobbobbobbobbob",
        "to": "/srv/backups/pdsmove/bob",
        "schedule": "*-*-* 03:30:00",
        "keep": {"daily": 3, "weekly": 4, "monthly": 24},
        "passwordFile": None,
        "pds": "https://pds.example.com",
    },
}
PLC = "https://plc.directory"
WRAPPER_REL = "libexec/pdsmove/pdsmove-backup-run"
# keys of the shipped unit's [Service] that the module replaces on purpose
NOT_COMPARED = {
    "ExecStart",  # the package's wrapper instead of /usr/local/libexec/...
    "Environment",  # the settings come from options, not a file
    "EnvironmentFile",
    "LoadCredential",  # passwordFile instead of /etc/credstore
    "DynamicUser",  # a fixed user pdsmove (User=, Group=) instead
    "StateDirectory",  # pdsmove/<name> instead of pdsmove/%i: compared below
}

failures = []


def fail(msg):
    failures.append(msg)


def expect(cond, msg):
    if not cond:
        fail(msg)
    return cond


def as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def norm(v):
    """a unit setting as systemd reads it: booleans as yes/no, everything as a string"""
    if v is True:
        return "yes"
    if v is False:
        return "no"
    s = str(v)
    return {"true": "yes", "false": "no"}.get(s, s)


def same_setting(got, wanted):
    """equal line by line; or, when no line is a "~" deny list, equal as one list of words
    (RestrictAddressFamilies=A B and RestrictAddressFamilies=A + =B mean the same)"""
    if got == wanted:
        return True
    if any(x.startswith("~") for x in got + wanted):
        return False
    return " ".join(got).split() == " ".join(wanted).split()


def shipped_service(root):
    """the [Service] settings of contrib/systemd/pdsmove-backup@.service: key -> [values]"""
    out, section = {}, None
    with open(os.path.join(root, "contrib/systemd/pdsmove-backup@.service")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


def check(d, root):
    expect(d.get("failedAssertions") == [], f"failed assertions: {d.get('failedAssertions')}")
    expect(d.get("warnings") == [], f"warnings: {d.get('warnings')}")

    names = sorted(SAMPLE)
    units = [f"pdsmove-backup-{n}" for n in names]
    expect(sorted(d["services"]) == units, f"services {sorted(d['services'])}, wanted {units}")
    expect(sorted(d["timers"]) == units, f"timers {sorted(d['timers'])}, wanted {units}")

    with open(os.path.join(root, "build.zig.zon")) as f:
        m = re.search(r'\.version\s*=\s*"([^"]+)"', f.read())
    zon_version = m.group(1) if m else None
    shipped = shipped_service(root)

    for n in names:
        want = SAMPLE[n]
        unit = f"pdsmove-backup-{n}"
        b = d["backups"].get(n)
        if not expect(b is not None, f"{n}: no backups.{n} in the evaluated options"):
            continue
        for k, v in want.items():
            expect(b.get(k) == v, f"{n}: option {k} = {b.get(k)!r}, wanted {v!r}")
        expect(b.get("plcUrl") == PLC, f"{n}: plcUrl default {b.get('plcUrl')!r}")

        pkg = d["packages"][n]
        store = pkg["storePath"]
        s = d["services"].get(unit)
        t = d["timers"].get(unit)
        if not (expect(s is not None, f"{unit}: no service") and expect(t is not None, f"{unit}: no timer")):
            continue
        sc, env = s["serviceConfig"], s["environment"]
        expect(s["enable"] is True, f"{unit}: service not enabled")
        expect(want["account"] in s["description"], f"{unit}: description {s['description']!r} does not name the account")
        for dep in ("wants", "after"):
            expect("network-online.target" in s[dep], f"{unit}: {dep} lacks network-online.target")

        # what runs: the wrapper from the package, pdsmove from the same package
        expect(sc.get("Type") == "oneshot", f"{unit}: Type={sc.get('Type')!r}, wanted oneshot")
        expect(sc.get("ExecStart") == f"{store}/{WRAPPER_REL}",
               f"{unit}: ExecStart={sc.get('ExecStart')!r}, wanted {store}/{WRAPPER_REL}")
        expect(env.get("PDSMOVE_BIN") == f"{store}/bin/pdsmove", f"{unit}: PDSMOVE_BIN={env.get('PDSMOVE_BIN')!r}")

        # settings the wrapper reads
        want_env = {
            "PDSMOVE_ACCOUNT": want["account"],
            "PDSMOVE_PLC_URL": PLC,
            "PDSMOVE_KEEP_DAILY": str(want["keep"]["daily"]),
            "PDSMOVE_KEEP_WEEKLY": str(want["keep"]["weekly"]),
            "PDSMOVE_KEEP_MONTHLY": str(want["keep"]["monthly"]),
            "PDSMOVE_STATE_DIR": f"/var/lib/pdsmove/{n}/state",
        }
        if want["to"]:
            want_env["PDSMOVE_TO"] = want["to"]
        if want["pds"]:
            want_env["PDSMOVE_PDS"] = want["pds"]
        got_env = {k: v for k, v in env.items() if k not in ("PATH", "PDSMOVE_BIN")}
        expect(got_env == want_env, f"{unit}: environment {got_env}, wanted {want_env}")
        expect(all(p in env.get("PATH", "") for p in ("coreutils/bin",)), f"{unit}: no coreutils in PATH (the wrapper needs mkdir)")

        # the password: only its path, only through LoadCredential=
        cred = as_list(sc.get("LoadCredential"))
        if want["passwordFile"]:
            expect(cred == [f"password:{want['passwordFile']}"],
                   f"{unit}: LoadCredential={cred}, wanted ['password:{want['passwordFile']}']")
        else:
            expect(cred == [], f"{unit}: LoadCredential={cred} without a passwordFile")
        expect(not any("/nix/store" in c for c in cred), f"{unit}: a credential from the Nix store: {cred}")
        expect(not any("PASSWORD" in k for k in env), f"{unit}: a password variable in the environment: {sorted(env)}")
        text = d["units"][f"{unit}.service"]
        if want["passwordFile"]:
            lines = [l for l in text.splitlines() if want["passwordFile"] in l]
            expect(lines == [f"LoadCredential=password:{want['passwordFile']}"],
                   f"{unit}: the password file appears in other lines of the unit: {lines}")

        # user, directories
        expect(sc.get("DynamicUser") is True or sc.get("User") == "pdsmove",
               f"{unit}: neither DynamicUser nor User=pdsmove")
        expect(sc.get("Group") == "pdsmove" or sc.get("DynamicUser") is True, f"{unit}: Group={sc.get('Group')!r}")
        expect(sc.get("StateDirectory") == f"pdsmove/{n}", f"{unit}: StateDirectory={sc.get('StateDirectory')!r}")
        rw = as_list(sc.get("ReadWritePaths"))
        expect(rw == ([want["to"]] if want["to"] else []), f"{unit}: ReadWritePaths={rw}")

        # hardening: the explicit list of the brief, then every other [Service] line of the
        # shipped unit (same values after yes/true normalisation)
        for k, v in (("ProtectSystem", "strict"), ("NoNewPrivileges", True), ("PrivateTmp", True),
                     ("ProtectHome", True), ("PrivateDevices", True), ("UMask", "0077")):
            expect(sc.get(k) == v, f"{unit}: {k}={sc.get(k)!r}, wanted {v!r}")
        for k, vals in shipped.items():
            if k in NOT_COMPARED:
                continue
            got = [norm(x) for x in as_list(sc.get(k))]
            wanted = [norm(x) for x in vals]
            expect(same_setting(got, wanted), f"{unit}: {k}={got}, the shipped unit has {wanted}")

        # the timer
        tc = t["timerConfig"]
        expect(t["enable"] is True, f"{unit}: timer not enabled")
        expect(tc.get("OnCalendar") == want["schedule"], f"{unit}: OnCalendar={tc.get('OnCalendar')!r}, wanted {want['schedule']!r}")
        expect(tc.get("RandomizedDelaySec") == "1h", f"{unit}: RandomizedDelaySec={tc.get('RandomizedDelaySec')!r}")
        expect(tc.get("Persistent") is True, f"{unit}: Persistent={tc.get('Persistent')!r}")
        expect(t["wantedBy"] == ["timers.target"], f"{unit}: timer wantedBy={t['wantedBy']}")
        expect("Unit" not in tc or tc["Unit"] == f"{unit}.service", f"{unit}: the timer starts {tc.get('Unit')}")

        # the package
        expect(pkg["pname"] == "pdsmove", f"{n}: package pname {pkg['pname']!r}")
        expect(pkg["version"] == zon_version, f"{n}: package version {pkg['version']!r}, build.zig.zon has {zon_version!r}")
        expect(pkg["mainProgram"] == "pdsmove", f"{n}: meta.mainProgram {pkg['mainProgram']!r}")
        expect(pkg["doCheck"] is False, f"{n}: doCheck {pkg['doCheck']!r}")
        expect(any("zig-hook" in x for x in pkg["nativeBuildInputs"]), f"{n}: no zig hook in nativeBuildInputs")
        expect(os.path.realpath(pkg["srcRoot"]) == os.path.realpath(root), f"{n}: src root {pkg['srcRoot']}, wanted {root}")
        inst = re.search(r"install -Dm755 (\S+) \$out/(\S+)", pkg["postInstall"])
        expect(inst is not None and inst.group(2) == WRAPPER_REL and os.path.isfile(os.path.join(root, inst.group(1))),
               f"{n}: postInstall does not install an existing file at $out/{WRAPPER_REL}: {pkg['postInstall']!r}")
        for f in re.findall(r"install -D\S* (\S+) ", pkg["postInstall"]):
            expect(os.path.isfile(os.path.join(root, f)), f"{n}: postInstall installs {f}, which does not exist")
        want_src = {"build.zig": True, "build.zig.zon": True, "src": True, "src/cli/main.c": True, "include": True,
                    "contrib/systemd/pdsmove-backup-run": True, "contrib/systemd/example.conf": True,
                    "docs/tmp": True, ".git": False, ".zig-cache": False, "zig-out": False, "tmp": False,
                    "x.journal.sqlite": False, "src/a.c~": False, "result": False}
        expect(pkg["srcIncludes"] == want_src, f"{n}: source filter {pkg['srcIncludes']}, wanted {want_src}")

    rules = d["tmpfilesRules"]
    want_rules = [f"d {SAMPLE[n]['to']} 0700 pdsmove pdsmove - -" for n in names if SAMPLE[n]["to"]]
    expect(rules == want_rules, f"tmpfiles rules {rules}, wanted {want_rules}")
    u = d["users"].get("pdsmove")
    expect(u is not None and u["isSystemUser"] and not u["isNormalUser"] and u["group"] == "pdsmove",
           f"users.users.pdsmove = {u}")
    expect(d["groups"] == ["pdsmove"], f"users.groups = {d['groups']}")


def write_units(d, root, dest):
    os.makedirs(os.path.join(dest, "etc/systemd/system"), exist_ok=True)
    for name, text in d["units"].items():
        with open(os.path.join(dest, "etc/systemd/system", name), "w") as f:
            f.write(text)
        m = re.search(r"^ExecStart=(\S+)", text, re.M)
        if m:
            p = dest + m.group(1)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            shutil.copy(os.path.join(root, "contrib/systemd/pdsmove-backup-run"), p)
            os.chmod(p, 0o755)


def run_wrapper(d, root, tmp):
    """the wrapper with each service's environment, as systemd would start it"""
    fake = os.path.join(tmp, "fake-pdsmove")
    with open(fake, "w") as f:
        f.write('#!/bin/sh\nprintf "%s\\n" "$*" >>"$FAKE_CALLS"\n')
    os.chmod(fake, 0o755)
    sh = shutil.which("dash") or "/bin/sh"
    for n in sorted(SAMPLE):
        unit = f"pdsmove-backup-{n}"
        s = d["services"].get(unit)
        if s is None:
            continue
        env = dict(s["environment"])
        base = os.path.join(tmp, n)
        state = os.path.join(base, "state")
        os.makedirs(state)
        calls = os.path.join(base, "calls")
        env.update({"PATH": "/usr/bin:/bin", "PDSMOVE_BIN": fake, "FAKE_CALLS": calls, "STATE_DIRECTORY": state})
        to = os.path.join(state, "backups")
        if "PDSMOVE_TO" in env:  # a directory outside the state directory: redirected under tmp
            to = base + env["PDSMOVE_TO"]
            env["PDSMOVE_TO"] = to
        for c in as_list(s["serviceConfig"].get("LoadCredential")):
            cid, _, _ = c.partition(":")
            creds = os.path.join(base, "credentials")
            os.makedirs(creds, exist_ok=True)
            with open(os.path.join(creds, cid), "w") as f:
                f.write("not-a-real-password\n")
            env["CREDENTIALS_DIRECTORY"] = creds
        r = subprocess.run([sh, os.path.join(root, "contrib/systemd/pdsmove-backup-run")], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        got = open(calls).read().splitlines() if os.path.exists(calls) else []
        want = SAMPLE[n]
        backup = f"backup {want['account']} --to {to}"
        if want["passwordFile"]:
            backup += f" --password-file {os.path.join(base, 'credentials', 'password')}"
        if want["pds"]:
            backup += f" --pds {want['pds']}"
        backup += f" --plc-url {PLC}"
        k = want["keep"]
        prune = f"prune {to} --keep-daily {k['daily']} --keep-weekly {k['weekly']} --keep-monthly {k['monthly']}"
        expect(r.returncode == 0 and got == [backup, prune],
               f"{unit}: the wrapper with the unit's environment exited {r.returncode} and called pdsmove with "
               f"{got}, wanted {[backup, prune]}; its output: {r.stderr.strip()!r}")


def main(argv):
    args = {"--repo": None, "--units-dir": None, "--wrapper-tmp": None}
    paths = []
    it = iter(argv)
    for a in it:
        if a in args:
            args[a] = next(it, None)
        else:
            paths.append(a)
    if len(paths) != 1 or not args["--repo"]:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(paths[0]) as f:
        d = json.load(f)
    root = args["--repo"]
    try:
        check(d, root)
        if args["--units-dir"]:
            write_units(d, root, args["--units-dir"])
        if args["--wrapper-tmp"]:
            run_wrapper(d, root, args["--wrapper-tmp"])
    except (KeyError, TypeError, AttributeError) as e:
        fail(f"the evaluation result lacks something the check needs: {e!r}")
    for m in failures:
        print(m)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
