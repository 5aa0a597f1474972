# sample-config.nix — the configuration scripts/check-nix evaluates module.nix with: one
# backup with the defaults and a password file, one with its own directory, schedule, policy
# and PDS. scripts/check-nix (contrib/nixos/test/check_eval.py) checks the result against it.
{
  services.pdsmove.backups.alice = {
    account = "alice.example.com";
    passwordFile = "/run/agenix/alice-pw";
  };
  services.pdsmove.backups.bob = {
    account = "did:plc:bobbobbobbobbobbobbobbob";
    to = "/srv/backups/pdsmove/bob";
    schedule = "*-*-* 03:30:00";
    keep = {
      daily = 3;
      monthly = 24;
    };
    pds = "https://pds.example.com";
  };
}
