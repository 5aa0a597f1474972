/* migrate_steps.c — the migrate pipeline's step list (migrate.h): names as the journal stores
 * them, in the order migrate_run runs them. Must never drift from the names the pipeline
 * journals (tests/test_cli_status.c checks the pipeline's sources against it). */
#include "pdsmove/migrate.h"

/* The array is declared with MIGRATE_STEPS_COUNT elements: a list of another length does not
 * compile (conflicting types), so the count cannot go stale. */
const migrate_step_info migrate_steps[] = {
    {"export", "download the repository from the old PDS and verify it"},
    {"create-account", "create the account on the new PDS (or find the one an earlier run created)"},
    {"import", "import the repository into the new PDS"},
    {"blobs-fetch", "download the blobs from the old PDS"},
    {"blobs", "upload the blobs to the new PDS"},
    {"preferences", "copy the preferences"},
    {"identity", "get the email token (or use the rotation key) and point the DID at the new PDS"},
    {"verify", "check the new account against the export"},
    {"activate", "activate the new account"},
    {"handle", "set the handle on the new PDS"},
    {"deactivate-old", "deactivate the old account"},
    {"archive", "pack the exported copy of the account into the archive directory"},
};

_Static_assert(sizeof migrate_steps / sizeof migrate_steps[0] == MIGRATE_STEPS_COUNT,
               "MIGRATE_STEPS_COUNT must match the list");
