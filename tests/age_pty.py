#!/usr/bin/env python3
"""age_pty.py PASSFILE CMD [ARG...] — runs CMD (Debian's `age -p` / `age -d` of a passphrase
file) on a pseudo-terminal, answering each passphrase prompt with the first line of PASSFILE.
age reads passphrases only from a terminal; tests/test_age.c uses this for the scrypt interop.
Exit status: CMD's; 124 on a 120 s timeout. CMD's terminal output goes to stderr."""
import os, pty, select, sys, time

def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    with open(sys.argv[1], "rb") as f:
        pw = f.read().split(b"\n")[0]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[2], sys.argv[2:])
    seen = b""
    deadline = time.time() + 120
    while True:
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return 124
        r, _, _ = select.select([fd], [], [], 1.0)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        sys.stderr.buffer.write(data)
        seen += data
        # "Enter passphrase…:" and "Confirm passphrase:" each get one answer.
        while b"passphrase" in seen.lower() and b":" in seen.split(b"passphrase", 1)[-1]:
            os.write(fd, pw + b"\n")
            seen = seen.split(b"passphrase", 1)[-1].split(b":", 1)[-1]
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

sys.exit(main())
