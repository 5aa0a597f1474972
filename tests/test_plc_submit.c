/* test_plc_submit.c — the one builder, checker and poster of pdsmove's PLC operations: the
 * next operation built from a described change (key order, the 5-key limit), signed
 * operations that differ from it in any field refused with the difference named (a PDS that
 * drops the user's key, puts its own first, adds a service, or signs with a key that has no
 * say), a saved operation reused only while it equals what the run builds, and the poster
 * refusing before it connects anywhere. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdsmove/journal.h"
#include "pdsmove/plc_submit.h"

#include "scratch_testutil.h"

typedef struct {
    key_priv k;
    char did[KEY_DID_MAX];
} tkey;

static void tkey_new(tkey *t) {
    err_t e;
    cr_assert_eq(key_priv_generate(&t->k, KEY_K256, &e), ERR_OK, "%s", e.msg);
    cr_assert_gt(key_pub_to_did_key(&t->k.pub, t->did, sizeof t->did), 0);
}

/* The account: the user's key U first, then the old PDS's key P; signing key S; on the old
 * PDS, with one more service and a non-handle alias. The new PDS recommends N and S2. */
typedef struct {
    tkey u, p, n, s, s2, x;
    plc_op head;          /* the current state (signed by P) */
    char head_cid[CID_STR_MAX];
} scene;

static void scene_build(scene *sc) {
    err_t e;
    tkey *all[] = {&sc->u, &sc->p, &sc->n, &sc->s, &sc->s2, &sc->x};
    for (size_t i = 0; i < 6; i++) tkey_new(all[i]);
    plc_op *h = &sc->head;
    plc_op_init(h, PLC_OP_REGULAR);
    cr_assert_eq(plc_op_add_rotation_key(h, sc->u.did, &e), ERR_OK);
    cr_assert_eq(plc_op_add_rotation_key(h, sc->p.did, &e), ERR_OK);
    cr_assert_eq(plc_op_add_also_known_as(h, "at://alice.old.test", &e), ERR_OK);
    cr_assert_eq(plc_op_add_also_known_as(h, "https://alice.example.com", &e), ERR_OK);
    cr_assert_eq(plc_op_set_vmethod(h, "atproto", sc->s.did, &e), ERR_OK);
    cr_assert_eq(plc_op_set_service(h, "atproto_pds", "AtprotoPersonalDataServer", "https://old.test", &e), ERR_OK);
    cr_assert_eq(plc_op_set_service(h, "labeler", "AtprotoLabeler", "https://labels.example.com", &e), ERR_OK);
    cr_assert_eq(plc_op_sign(h, &sc->p.k, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_cid_str(h, sc->head_cid, &e), ERR_OK);
}

static void scene_free(scene *sc) {
    plc_op_free(&sc->head);
    tkey *all[] = {&sc->u, &sc->p, &sc->n, &sc->s, &sc->s2, &sc->x};
    for (size_t i = 0; i < 6; i++) key_priv_wipe(&all[i]->k);
}

/* What migrate builds: the old PDS's key dropped, the new PDS's last, new handle, key, PDS. */
static void migrate_target(const scene *sc, plc_op *out) {
    const char *drop[] = {sc->p.did}, *last[] = {sc->n.did};
    plc_change c = {.drop_keys = drop, .n_drop_keys = 1, .last_keys = last, .n_last_keys = 1, .handle = "alice.new.test",
                    .signing_key = sc->s2.did, .pds_endpoint = "https://new.test"};
    err_t e;
    cr_assert_eq(plc_submit_build(&sc->head, sc->head_cid, &c, "did:plc:test", out, &e), ERR_OK, "%s", e.msg);
}

/* target, changed by edit (may be NULL), signed by k, as JSON (owned). */
static json_t *signed_variant(const plc_op *target, void (*edit)(plc_op *, const scene *), const scene *sc, const key_priv *k) {
    plc_op op;
    err_t e;
    plc_op_init(&op, PLC_OP_REGULAR);
    cr_assert_eq(plc_op_copy(&op, target, &e), ERR_OK);
    if (edit) edit(&op, sc);
    cr_assert_eq(plc_op_sign(&op, k, &e), ERR_OK, "%s", e.msg);
    json_t *j = plc_op_to_json(&op, &e);
    cr_assert_not_null(j);
    plc_op_free(&op);
    return j;
}

/* Replaces op's rotation keys by keys[0..n). */
static void set_keys(plc_op *op, const char *const *keys, size_t n) {
    err_t e;
    for (size_t i = 0; i < op->n_rotation_keys; i++) free(op->rotation_keys[i]);
    op->n_rotation_keys = 0;
    for (size_t i = 0; i < n; i++) cr_assert_eq(plc_op_add_rotation_key(op, keys[i], &e), ERR_OK);
}

static void drop_user_key(plc_op *op, const scene *sc) {
    const char *k[] = {sc->n.did};
    set_keys(op, k, 1);
}
static void pds_key_first(plc_op *op, const scene *sc) {
    const char *k[] = {sc->p.did, sc->u.did, sc->n.did};
    set_keys(op, k, 3);
}
static void add_service(plc_op *op, const scene *sc) {
    (void)sc;
    err_t e;
    cr_assert_eq(plc_op_set_service(op, "evil", "AtprotoPersonalDataServer", "https://evil.example", &e), ERR_OK);
}
static void older_prev(plc_op *op, const scene *sc) {
    (void)sc;
    err_t e;
    cr_assert_eq(plc_op_set_prev(op, "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm", &e), ERR_OK, "%s", e.msg);
}

Test(plc_submit, build_orders_keys_users_first_pds_last_and_keeps_what_it_does_not_change) {
    scene sc;
    scene_build(&sc);
    plc_op t;
    migrate_target(&sc, &t);
    cr_assert_eq(t.n_rotation_keys, 2);
    cr_assert_str_eq(t.rotation_keys[0], sc.u.did);
    cr_assert_str_eq(t.rotation_keys[1], sc.n.did);
    cr_assert_eq(t.n_also_known_as, 2);
    cr_assert_str_eq(t.also_known_as[0], "at://alice.new.test");
    cr_assert_str_eq(t.also_known_as[1], "https://alice.example.com");
    cr_assert_str_eq(plc_op_vmethod(&t, "atproto"), sc.s2.did);
    cr_assert_str_eq(plc_op_service(&t, "atproto_pds")->endpoint, "https://new.test");
    cr_assert_str_eq(plc_op_service(&t, "labeler")->endpoint, "https://labels.example.com");
    cr_assert_str_eq(t.prev, sc.head_cid);
    cr_assert_null(t.sig);
    plc_op_free(&t);
    /* a key put first that is listed further down moves there */
    const char *first[] = {sc.p.did};
    plc_change c = {.first_keys = first, .n_first_keys = 1};
    err_t e;
    cr_assert_eq(plc_submit_build(&sc.head, sc.head_cid, &c, "did:plc:test", &t, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(t.n_rotation_keys, 2);
    cr_assert_str_eq(t.rotation_keys[0], sc.p.did);
    cr_assert_str_eq(t.rotation_keys[1], sc.u.did);
    cr_assert_str_eq(t.also_known_as[0], "at://alice.old.test", "no handle given: alsoKnownAs as it was");
    plc_op_free(&t);
    scene_free(&sc);
}

Test(plc_submit, no_change_adds_keys_beyond_the_specs_five_but_an_unchanged_list_is_kept) {
    scene sc;
    scene_build(&sc);
    const char *five[] = {sc.u.did, sc.p.did, sc.n.did, sc.s.did, sc.s2.did};
    set_keys(&sc.head, five, 5);
    const char *first[] = {sc.x.did};
    plc_change c = {.first_keys = first, .n_first_keys = 1};
    plc_op t;
    err_t e;
    cr_assert_eq(plc_submit_build(&sc.head, sc.head_cid, &c, "did:plc:test", &t, &e), ERR_LIMIT);
    cr_assert(strstr(e.msg, "6 rotation keys") && strstr(e.msg, "allows 5"), "%s", e.msg);
    cr_assert_eq(t.n_rotation_keys, 0, "left empty on error");
    /* a recovery restores an op as it was, even one with six keys (the directory allows ten) */
    const char *six[] = {sc.u.did, sc.p.did, sc.n.did, sc.s.did, sc.s2.did, sc.x.did};
    set_keys(&sc.head, six, 6);
    plc_change same = {0};
    cr_assert_eq(plc_submit_build(&sc.head, sc.head_cid, &same, "did:plc:test", &t, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(t.n_rotation_keys, 6);
    plc_op_free(&t);
    scene_free(&sc);
}

Test(plc_submit, check_accepts_exactly_the_built_op_and_refuses_every_change_naming_it) {
    scene sc;
    scene_build(&sc);
    plc_op t;
    migrate_target(&sc, &t);
    err_t e;
    char cid[CID_STR_MAX];
    size_t signer = 99;
    json_t *j = signed_variant(&t, NULL, &sc, &sc.p.k);
    cr_assert_eq(plc_submit_check(j, &t, &sc.head, &signer, cid, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(signer, 1, "signed by P, rotation key #1 of the head");
    cr_assert_eq(strncmp(cid, "bafyrei", 7), 0, "%s", cid);
    json_decref(j);

    struct {
        void (*edit)(plc_op *, const scene *);
        err_code want;
        const char *says;
    } cases[] = {
        {drop_user_key, ERR_MISMATCH, "(expected at #0) is missing"},
        {pds_key_first, ERR_MISMATCH, "was added at #0"},
        {add_service, ERR_MISMATCH, "services.evil (AtprotoPersonalDataServer https://evil.example) was added"},
        {older_prev, ERR_CONFLICT, "the identity changed meanwhile"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        j = signed_variant(&t, cases[i].edit, &sc, &sc.p.k);
        cr_assert_eq(plc_submit_check(j, &t, &sc.head, NULL, NULL, &e), cases[i].want, "case %zu: %s", i, e.msg);
        cr_assert(strstr(e.msg, cases[i].says), "case %zu: %s", i, e.msg);
        cr_assert(strstr(e.msg, "nothing was submitted"), "case %zu: %s", i, e.msg);
        json_decref(j);
    }
    /* the dropped key is named */
    j = signed_variant(&t, drop_user_key, &sc, &sc.p.k);
    plc_submit_check(j, &t, &sc.head, NULL, NULL, &e);
    cr_assert(strstr(e.msg, sc.u.did), "%s", e.msg);
    json_decref(j);
    /* the very op, signed by a key that is not a rotation key of the head (the new PDS's) */
    j = signed_variant(&t, NULL, &sc, &sc.n.k);
    cr_assert_neq(plc_submit_check(j, &t, &sc.head, NULL, NULL, &e), ERR_OK);
    cr_assert(strstr(e.msg, "not signed by a current rotation key"), "%s", e.msg);
    json_decref(j);
    /* unsigned */
    j = plc_op_to_json(&t, &e);
    cr_assert_neq(plc_submit_check(j, &t, &sc.head, NULL, NULL, &e), ERR_OK);
    json_decref(j);
    plc_op_free(&t);
    scene_free(&sc);
}

static char jdir[64], jpath[128];
static void jsetup(void) {
    scratch_make(jdir, sizeof jdir, "plcsubmit");
    snprintf(jpath, sizeof jpath, "%s/j.sqlite", jdir);
}
static void jteardown(void) { scratch_remove(jdir); }

Test(plc_submit, a_saved_op_is_reused_only_while_it_equals_what_the_run_builds, .init = jsetup, .fini = jteardown) {
    scene sc;
    scene_build(&sc);
    journal *j = NULL;
    err_t e;
    cr_assert_eq(journal_open(jpath, &j, &e), ERR_OK, "%s", e.msg);
    journal_run run;
    cr_assert_eq(journal_run_begin(j, "migrate", "did:plc:test", &run, &e), ERR_OK, "%s", e.msg);
    plc_op t;
    migrate_target(&sc, &t);
    err_t why;
    cr_assert_null(plc_submit_saved(j, run.id, "plc_signed_op", &t, &sc.head, &why));
    cr_assert_eq(why.code, ERR_NOT_FOUND);

    json_t *op = signed_variant(&t, NULL, &sc, &sc.p.k);
    cr_assert_eq(plc_submit_save(j, run.id, "plc_signed_op", op, &e), ERR_OK, "%s", e.msg);
    json_t *again = plc_submit_saved(j, run.id, "plc_signed_op", &t, &sc.head, &why);
    cr_assert_not_null(again, "%s", why.msg);
    cr_assert(json_equal(again, op));
    json_decref(again);

    /* the re-run builds something else (here: the user now adds a key of their own first; the
     * PDS endpoint, prev and signer are all still right): the saved op is not reused */
    const char *first[] = {sc.x.did}, *drop[] = {sc.p.did}, *last[] = {sc.n.did};
    plc_change c = {.first_keys = first, .n_first_keys = 1, .drop_keys = drop, .n_drop_keys = 1, .last_keys = last,
                    .n_last_keys = 1, .handle = "alice.new.test", .signing_key = sc.s2.did, .pds_endpoint = "https://new.test"};
    plc_op t2;
    cr_assert_eq(plc_submit_build(&sc.head, sc.head_cid, &c, "did:plc:test", &t2, &e), ERR_OK, "%s", e.msg);
    cr_assert_null(plc_submit_saved(j, run.id, "plc_signed_op", &t2, &sc.head, &why), "a stale saved op was reused");
    cr_assert_eq(why.code, ERR_MISMATCH);
    cr_assert(strstr(why.msg, sc.x.did) && strstr(why.msg, "is missing"), "%s", why.msg);
    /* and one edited in the journal (a PDS-altered op that slipped in) is not reused either */
    json_t *bad = signed_variant(&t, add_service, &sc, &sc.p.k);
    cr_assert_eq(plc_submit_save(j, run.id, "plc_signed_op", bad, &e), ERR_OK);
    cr_assert_null(plc_submit_saved(j, run.id, "plc_signed_op", &t, &sc.head, NULL));
    json_decref(bad);
    json_decref(op);
    plc_op_free(&t);
    plc_op_free(&t2);
    journal_close(j);
    scene_free(&sc);
}

Test(plc_submit, the_poster_checks_before_it_connects_anywhere) {
    scene sc;
    scene_build(&sc);
    plc_op t;
    migrate_target(&sc, &t);
    json_t *bad = signed_variant(&t, pds_key_first, &sc, &sc.p.k);
    xrpc_options xo = {.allow_insecure_http = true};
    plc_submit_to to = {.did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", .plc_url = "http://127.0.0.1:9", .xo = &xo};
    err_t e;
    cr_assert_eq(plc_submit_post(&to, bad, &t, &sc.head, &e), ERR_MISMATCH, "%s", e.msg);
    cr_assert(strstr(e.msg, "was added at #0"), "%s", e.msg);
    json_decref(bad);
    plc_op_free(&t);
    scene_free(&sc);
}
