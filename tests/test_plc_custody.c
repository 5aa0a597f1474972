/* test_plc_custody.c — identity custody without a server: audit logs built here with fresh
 * keys (plc.h) turned into histories and change descriptions; the add-rotation-key op and the
 * check of what a PDS signed; the recovery op (who may sign it, the 72-hour edge, replay against
 * the log); the watch comparison and its state file (atomic, 0600, expected list); the emailed
 * token's shape and its reading from an account.sqlite and a file; the commands' help and usage
 * errors (PDSMOVE_BIN, no network). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pdsmove/plc.h"
#include "pdsmove/plc_custody.h"
#include "pdsmove/plc_token.h"

extern char **environ;

/* ------------------------------------------------------------------ helpers */

typedef struct {
    key_priv k;
    char did[KEY_DID_MAX];
} tkey;

static void tkey_new(tkey *t) {
    err_t e;
    err_clear(&e);
    cr_assert_eq(key_priv_generate(&t->k, KEY_K256, &e), ERR_OK, "%s", e.msg);
    cr_assert_gt(key_pub_to_did_key(&t->k.pub, t->did, sizeof t->did), 0);
}

#define PDS_A "https://pds-a.example.com"
#define PDS_B "https://pds-b.example.com"

/* A regular op: rotation keys rot[0..n), handle, PDS endpoint, signing key sk, signed by signer. */
static void mk_op(plc_op *op, const char *prev, const tkey *const *rot, size_t n, const char *handle, const char *pds,
                  const tkey *sk, const tkey *signer) {
    err_t e;
    err_clear(&e);
    plc_op_init(op, PLC_OP_REGULAR);
    for (size_t i = 0; i < n; i++) cr_assert_eq(plc_op_add_rotation_key(op, rot[i]->did, &e), ERR_OK, "%s", e.msg);
    char aka[128];
    snprintf(aka, sizeof aka, "at://%s", handle);
    cr_assert_eq(plc_op_add_also_known_as(op, aka, &e), ERR_OK);
    cr_assert_eq(plc_op_set_vmethod(op, "atproto", sk->did, &e), ERR_OK);
    cr_assert_eq(plc_op_set_service(op, "atproto_pds", "AtprotoPersonalDataServer", pds, &e), ERR_OK);
    cr_assert_eq(plc_op_set_prev(op, prev, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_sign(op, &signer->k, &e), ERR_OK, "%s", e.msg);
}

#define T0 ((int64_t)1750000000000) /* 2025-06-15 */
#define HOUR_MS ((int64_t)3600 * 1000)

typedef struct {
    json_t *log;
    char did[PLC_DID_MAX];
    char cid[16][CID_STR_MAX];
    size_t n;
} tlog;

/* Appends op (consumed) created at T0 + at_ms. */
static void tlog_add(tlog *l, plc_op *op, int64_t at_ms, bool nullified) {
    err_t e;
    err_clear(&e);
    cr_assert_lt(l->n, 16);
    if (l->n == 0) {
        l->log = json_array();
        cr_assert_eq(plc_op_genesis_did(op, l->did, &e), ERR_OK, "%s", e.msg);
    }
    cr_assert_eq(plc_op_cid_str(op, l->cid[l->n], &e), ERR_OK, "%s", e.msg);
    char ts[40];
    plc_format_time(T0 + at_ms, ts, sizeof ts);
    json_t *ent = json_pack("{s:s, s:o, s:s, s:b, s:s}", "did", l->did, "operation", plc_op_to_json(op, &e), "cid", l->cid[l->n],
                            "nullified", nullified, "createdAt", ts);
    cr_assert_not_null(ent);
    json_array_append_new(l->log, ent);
    l->n++;
    plc_op_free(op);
}

/* The usual custody situation: #0 genesis by the PDS key P; #1 the user's key U put first
 * (signed by P); #2 an unwanted handle change signed by P (index 1) at T0 + 2 h. */
typedef struct {
    tkey u, p, sk;
    tlog l;
} scene;

static void scene_build(scene *s, bool with_bad_op) {
    memset(s, 0, sizeof *s);
    tkey_new(&s->u);
    tkey_new(&s->p);
    tkey_new(&s->sk);
    plc_op op;
    const tkey *g[] = {&s->p};
    mk_op(&op, NULL, g, 1, "alice.test", PDS_A, &s->sk, &s->p);
    tlog_add(&s->l, &op, 0, false);
    const tkey *two[] = {&s->u, &s->p};
    mk_op(&op, s->l.cid[0], two, 2, "alice.test", PDS_A, &s->sk, &s->p);
    tlog_add(&s->l, &op, HOUR_MS, false);
    if (with_bad_op) {
        mk_op(&op, s->l.cid[1], two, 2, "mallory.test", PDS_A, &s->sk, &s->p);
        tlog_add(&s->l, &op, 2 * HOUR_MS, false);
    }
}

static void scene_free(scene *s) {
    json_decref(s->l.log);
    key_priv_wipe(&s->u.k);
    key_priv_wipe(&s->p.k);
    key_priv_wipe(&s->sk.k);
}

static void history_of(const scene *s, plc_history *h) {
    err_t e;
    err_clear(&e);
    cr_assert_eq(plc_history_from_log(s->l.log, s->l.did, h, NULL, &e), ERR_OK, "%s", e.msg);
}

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int next;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/pdsmove-custody-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
    }
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

static void cleanup(void) {
    if (!tmpdir[0]) return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
    tmpdir[0] = 0;
}

/* ------------------------------------------------------------------ history */

Test(plc_custody, history_names_signers_prevs_and_what_each_op_changed) {
    scene s;
    scene_build(&s, true);
    plc_history h;
    history_of(&s, &h);
    cr_assert_eq(h.n, 3);
    cr_assert_eq(h.ent[0].prev, SIZE_MAX);
    cr_assert_eq(h.ent[0].signer, SIZE_MAX);
    cr_assert_eq(h.ent[1].prev, 0);
    cr_assert_eq(h.ent[1].signer, 0, "#1 is signed by the genesis's only key");
    cr_assert_eq(h.ent[2].prev, 1);
    cr_assert_eq(h.ent[2].signer, 1, "#2 is signed by P, index 1 of #1");
    cr_assert_str_eq(h.ent[2].cid, s.l.cid[2]);
    cr_assert_eq(plc_history_find(&h, s.l.cid[1]), 1);
    cr_assert_eq(plc_history_find(&h, "bafyreinotthere"), SIZE_MAX);
    cr_assert_eq(plc_history_child(&h, 0), 1);
    cr_assert_eq(plc_history_child(&h, 2), SIZE_MAX);
    char d[PLC_CHANGE_MAX];
    plc_history_describe(&h, 0, d, sizeof d);
    cr_assert(strstr(d, "created: handle alice.test") && strstr(d, PDS_A) && strstr(d, s.p.did), "%s", d);
    plc_history_describe(&h, 1, d, sizeof d);
    cr_assert(strstr(d, "rotation key added at #0") && strstr(d, s.u.did), "%s", d);
    cr_assert_null(strstr(d, "handle"), "nothing else changed: %s", d);
    plc_history_describe(&h, 2, d, sizeof d);
    cr_assert_str_eq(d, "handle changed alice.test -> mallory.test");
    plc_history_free(&h);
    scene_free(&s);
}

Test(plc_custody, describe_change_reports_pds_moves_key_removals_reorders_and_no_change) {
    tkey a, b, c, sk, sk2;
    tkey_new(&a);
    tkey_new(&b);
    tkey_new(&c);
    tkey_new(&sk);
    tkey_new(&sk2);
    plc_op x, y;
    const tkey *ab[] = {&a, &b}, *ba[] = {&b, &a}, *ac[] = {&a, &c};
    mk_op(&x, NULL, ab, 2, "h.test", PDS_A, &sk, &a);
    mk_op(&y, NULL, ab, 2, "h.test", PDS_B, &sk2, &a);
    char d[PLC_CHANGE_MAX];
    plc_describe_change(&x, &y, d, sizeof d);
    cr_assert(strstr(d, "PDS moved " PDS_A " -> " PDS_B), "%s", d);
    cr_assert(strstr(d, "signing key changed"), "%s", d);
    plc_op_free(&y);
    mk_op(&y, NULL, ac, 2, "h.test", PDS_A, &sk, &a);
    plc_describe_change(&x, &y, d, sizeof d);
    cr_assert(strstr(d, "rotation key added at #1") && strstr(d, c.did), "%s", d);
    cr_assert(strstr(d, "rotation key removed (was #1)") && strstr(d, b.did), "%s", d);
    cr_assert_null(strstr(d, "reordered"), "%s", d);
    plc_op_free(&y);
    mk_op(&y, NULL, ba, 2, "h.test", PDS_A, &sk, &a);
    plc_describe_change(&x, &y, d, sizeof d);
    cr_assert(strstr(d, "rotation keys reordered"), "%s", d);
    plc_op_free(&y);
    mk_op(&y, NULL, ab, 2, "h.test", PDS_A, &sk, &b);
    plc_describe_change(&x, &y, d, sizeof d);
    cr_assert_str_eq(d, "no change in content");
    plc_op_free(&y);
    plc_op_init(&y, PLC_OP_TOMBSTONE);
    plc_describe_change(&x, &y, d, sizeof d);
    cr_assert(strstr(d, "tombstone"), "%s", d);
    plc_op_free(&y);
    /* a tiny buffer truncates, never overflows */
    char small[12];
    mk_op(&y, NULL, ac, 2, "h.test", PDS_B, &sk2, &a);
    plc_describe_change(&x, &y, small, sizeof small);
    cr_assert_eq(strlen(small), sizeof small - 1);
    plc_op_free(&x);
    plc_op_free(&y);
}

/* ------------------------------------------------------------------ add-rotation-key */

Test(plc_custody, add_key_op_puts_the_key_first_keeps_the_rest_and_follows_the_head) {
    scene s;
    scene_build(&s, false);
    plc_history h;
    history_of(&s, &h);
    tkey n;
    tkey_new(&n);
    err_t e;
    err_clear(&e);
    plc_op op;
    bool first;
    cr_assert_eq(plc_build_add_key_op(&h.state, n.did, &op, &first, &e), ERR_OK, "%s", e.msg);
    cr_assert_not(first);
    cr_assert_eq(op.n_rotation_keys, 3);
    cr_assert_str_eq(op.rotation_keys[0], n.did);
    cr_assert_str_eq(op.rotation_keys[1], s.u.did);
    cr_assert_str_eq(op.rotation_keys[2], s.p.did);
    cr_assert_str_eq(op.prev, s.l.cid[1]);
    cr_assert_str_eq(plc_op_handle(&op), "alice.test");
    cr_assert_str_eq(plc_op_service(&op, "atproto_pds")->endpoint, PDS_A);
    cr_assert_str_eq(plc_op_vmethod(&op, "atproto"), s.sk.did);
    /* as the PDS would: signed by a current rotation key, it validates as the next op */
    cr_assert_eq(plc_op_sign(&op, &s.p.k, &e), ERR_OK, "%s", e.msg);
    json_t *signed_op = plc_op_to_json(&op, &e);
    plc_op target;
    cr_assert_eq(plc_build_add_key_op(&h.state, n.did, &target, &first, &e), ERR_OK);
    char cid[CID_STR_MAX];
    cr_assert_eq(plc_check_signed_op(signed_op, &h.state, &target, cid, &e), ERR_OK, "%s", e.msg);
    tlog_add(&s.l, &op, 3 * HOUR_MS, false);
    cr_assert_str_eq(cid, s.l.cid[2]);
    plc_history h2;
    history_of(&s, &h2);
    cr_assert_str_eq(h2.state.op.rotation_keys[0], n.did);
    /* now it is first: nothing to do */
    plc_op again;
    cr_assert_eq(plc_build_add_key_op(&h2.state, n.did, &again, &first, &e), ERR_OK);
    cr_assert(first);
    cr_assert_eq(again.n_rotation_keys, 0);
    /* a key listed further down moves up instead of appearing twice */
    cr_assert_eq(plc_build_add_key_op(&h2.state, s.p.did, &again, &first, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(again.n_rotation_keys, 3);
    cr_assert_str_eq(again.rotation_keys[0], s.p.did);
    cr_assert_str_eq(again.rotation_keys[1], n.did);
    cr_assert_str_eq(again.rotation_keys[2], s.u.did);
    plc_op_free(&again);
    plc_op_free(&target);
    json_decref(signed_op);
    plc_history_free(&h);
    plc_history_free(&h2);
    key_priv_wipe(&n.k);
    scene_free(&s);
}

Test(plc_custody, add_key_refuses_a_sixth_rotation_key_and_a_bad_did_key) {
    tkey k[6], sk;
    const tkey *five[5];
    for (size_t i = 0; i < 6; i++) tkey_new(&k[i]);
    for (size_t i = 0; i < 5; i++) five[i] = &k[i];
    tkey_new(&sk);
    tlog l = {0};
    plc_op op;
    mk_op(&op, NULL, five, 5, "a.test", PDS_A, &sk, &k[0]);
    tlog_add(&l, &op, 0, false);
    plc_state st;
    size_t bad;
    err_t e;
    err_clear(&e);
    cr_assert_eq(plc_log_validate(l.log, l.did, &st, &bad, &e), ERR_OK, "%s", e.msg);
    bool first;
    cr_assert_eq(plc_build_add_key_op(&st, k[5].did, &op, &first, &e), ERR_LIMIT);
    cr_assert(strstr(e.msg, "6 rotation keys") && strstr(e.msg, "allows 5"), "%s", e.msg);
    /* moving a listed key to the front keeps 5: allowed */
    cr_assert_eq(plc_build_add_key_op(&st, k[4].did, &op, &first, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(op.n_rotation_keys, 5);
    plc_op_free(&op);
    cr_assert_neq(plc_build_add_key_op(&st, "did:key:zNotAKey", &op, &first, &e), ERR_OK);
    plc_state_free(&st);
    json_decref(l.log);
}

Test(plc_custody, check_signed_op_refuses_a_wrong_signer_a_stale_prev_and_changed_content) {
    scene s;
    scene_build(&s, false);
    plc_history h;
    history_of(&s, &h);
    tkey n, stranger;
    tkey_new(&n);
    tkey_new(&stranger);
    err_t e;
    err_clear(&e);
    plc_op target, op;
    bool first;
    cr_assert_eq(plc_build_add_key_op(&h.state, n.did, &target, &first, &e), ERR_OK);
    /* signed by a key that is not a rotation key */
    cr_assert_eq(plc_op_copy(&op, &target, &e), ERR_OK);
    cr_assert_eq(plc_op_sign(&op, &stranger.k, &e), ERR_OK);
    json_t *j = plc_op_to_json(&op, &e);
    cr_assert_neq(plc_check_signed_op(j, &h.state, &target, NULL, &e), ERR_OK);
    cr_assert(strstr(e.msg, "not signed by a current rotation key"), "%s", e.msg);
    json_decref(j);
    plc_op_free(&op);
    /* following an older op */
    cr_assert_eq(plc_op_copy(&op, &target, &e), ERR_OK);
    cr_assert_eq(plc_op_set_prev(&op, s.l.cid[0], &e), ERR_OK);
    cr_assert_eq(plc_op_sign(&op, &s.p.k, &e), ERR_OK);
    j = plc_op_to_json(&op, &e);
    cr_assert_eq(plc_check_signed_op(j, &h.state, &target, NULL, &e), ERR_CONFLICT, "%s", e.msg);
    json_decref(j);
    plc_op_free(&op);
    /* the PDS signed something else than was shown (another endpoint) */
    cr_assert_eq(plc_op_copy(&op, &target, &e), ERR_OK);
    cr_assert_eq(plc_op_set_service(&op, "atproto_pds", "AtprotoPersonalDataServer", PDS_B, &e), ERR_OK);
    cr_assert_eq(plc_op_sign(&op, &s.p.k, &e), ERR_OK);
    j = plc_op_to_json(&op, &e);
    cr_assert_eq(plc_check_signed_op(j, &h.state, &target, NULL, &e), ERR_MISMATCH, "%s", e.msg);
    cr_assert(strstr(e.msg, "services"), "%s", e.msg);
    json_decref(j);
    plc_op_free(&op);
    /* the rotation keys in another order */
    cr_assert_eq(plc_op_copy(&op, &target, &e), ERR_OK);
    char *t = op.rotation_keys[0];
    op.rotation_keys[0] = op.rotation_keys[1];
    op.rotation_keys[1] = t;
    cr_assert_eq(plc_op_sign(&op, &s.p.k, &e), ERR_OK);
    j = plc_op_to_json(&op, &e);
    cr_assert_eq(plc_check_signed_op(j, &h.state, &target, NULL, &e), ERR_MISMATCH, "%s", e.msg);
    json_decref(j);
    plc_op_free(&op);
    plc_op_free(&target);
    plc_history_free(&h);
    key_priv_wipe(&n.k);
    key_priv_wipe(&stranger.k);
    scene_free(&s);
}

/* ------------------------------------------------------------------ recover */

Test(plc_custody, recovery_by_the_first_key_restores_the_fork_and_the_directory_rules_accept_it) {
    scene s;
    scene_build(&s, true);
    plc_history h;
    history_of(&s, &h);
    err_t e;
    err_clear(&e);
    plc_op op;
    plc_recover_plan plan;
    int64_t now = T0 + 3 * HOUR_MS;
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[1], s.u.did, now, &op, &plan, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plan.fork, 1);
    cr_assert_eq(plan.first_undone, 2);
    cr_assert_eq(plan.n_undone, 1);
    cr_assert_eq(plan.key_index, 0);
    cr_assert_eq(plan.signer_index, 1);
    cr_assert_eq(plan.deadline_ms, T0 + 2 * HOUR_MS + PLC_RECOVERY_WINDOW_MS);
    cr_assert_str_eq(op.prev, s.l.cid[1]);
    cr_assert_null(op.sig);
    cr_assert_str_eq(plc_op_handle(&op), "alice.test", "the fork's handle comes back");
    cr_assert_str_eq(op.rotation_keys[0], s.u.did);
    cr_assert_eq(plc_op_sign(&op, &s.u.k, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_recover_simulate(s.l.log, s.l.did, &op, &plan, now, &e), ERR_OK, "%s", e.msg);
    /* the same, for real: appended with the bad op flagged nullified, the log validates */
    json_object_set_new(json_array_get(s.l.log, 2), "nullified", json_true());
    tlog_add(&s.l, &op, 3 * HOUR_MS, false);
    plc_history h2;
    history_of(&s, &h2);
    cr_assert_str_eq(h2.state.last_cid, s.l.cid[3]);
    cr_assert_str_eq(plc_op_handle(&h2.state.op), "alice.test");
    cr_assert(h2.ent[2].nullified);
    char d[PLC_CHANGE_MAX];
    plc_history_describe(&h2, 3, d, sizeof d);
    cr_assert(strstr(d, "recovery: forks at #1") && strstr(d, "from #2") && strstr(d, "restores its content"), "%s", d);
    plc_history_free(&h);
    plc_history_free(&h2);
    scene_free(&s);
}

Test(plc_custody, recovery_is_refused_with_a_reason_for_each_losing_case) {
    scene s;
    scene_build(&s, true);
    plc_history h;
    history_of(&s, &h);
    err_t e;
    err_clear(&e);
    plc_op op;
    plc_recover_plan plan;
    int64_t now = T0 + 3 * HOUR_MS;
    /* the PDS key signed the bad op: it cannot undo itself */
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[1], s.p.did, now, &op, &plan, &e), ERR_CONFLICT);
    cr_assert(strstr(e.msg, "your own key"), "%s", e.msg);
    /* a key that is not a rotation key of the fork */
    tkey x;
    tkey_new(&x);
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[1], x.did, now, &op, &plan, &e), ERR_USAGE);
    cr_assert(strstr(e.msg, "not a rotation key of operation #1") && strstr(e.msg, s.u.did), "%s", e.msg);
    /* forking at the bad op itself: nothing after it, and the message names the good one */
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[2], s.u.did, now, &op, &plan, &e), ERR_CONFLICT);
    cr_assert(strstr(e.msg, "latest one") && strstr(e.msg, s.l.cid[1]), "%s", e.msg);
    /* an unknown CID */
    cr_assert_eq(plc_recover_prepare(&h, "bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm", s.u.did, now, &op, &plan, &e),
                 ERR_NOT_FOUND);
    /* at the genesis the user's key was not yet a rotation key */
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[0], s.u.did, now, &op, &plan, &e), ERR_USAGE);
    plc_history_free(&h);
    key_priv_wipe(&x.k);
    scene_free(&s);
}

Test(plc_custody, recovery_window_is_72_hours_inclusive) {
    scene s;
    scene_build(&s, true);
    plc_history h;
    history_of(&s, &h);
    err_t e;
    err_clear(&e);
    plc_op op;
    plc_recover_plan plan;
    int64_t edge = T0 + 2 * HOUR_MS + PLC_RECOVERY_WINDOW_MS;
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[1], s.u.did, edge, &op, &plan, &e), ERR_OK, "exactly 72 h: %s", e.msg);
    cr_assert_eq(plc_op_sign(&op, &s.u.k, &e), ERR_OK);
    cr_assert_eq(plc_recover_simulate(s.l.log, s.l.did, &op, &plan, edge, &e), ERR_OK, "exactly 72 h: %s", e.msg);
    plc_op_free(&op);
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[1], s.u.did, edge + 1, &op, &plan, &e), ERR_CONFLICT);
    cr_assert(strstr(e.msg, "too late") && strstr(e.msg, "72-hour"), "%s", e.msg);
    plc_history_free(&h);
    scene_free(&s);
}

Test(plc_custody, recovery_simulation_catches_an_op_the_directory_would_refuse) {
    scene s;
    scene_build(&s, true);
    plc_history h;
    history_of(&s, &h);
    err_t e;
    err_clear(&e);
    plc_op op;
    plc_recover_plan plan;
    int64_t now = T0 + 3 * HOUR_MS;
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[1], s.u.did, now, &op, &plan, &e), ERR_OK, "%s", e.msg);
    /* signed with the lower-priority key by mistake: the replay refuses it */
    cr_assert_eq(plc_op_sign(&op, &s.p.k, &e), ERR_OK);
    cr_assert_neq(plc_recover_simulate(s.l.log, s.l.did, &op, &plan, now, &e), ERR_OK);
    cr_assert(strstr(e.msg, "would not be accepted"), "%s", e.msg);
    plc_op_free(&op);
    plc_history_free(&h);
    scene_free(&s);
}

/* ------------------------------------------------------------------ watch */

static json_t *state_with(const tlog *l, size_t n_ops, const char *const *expected) {
    json_t *ops = json_array(), *exp = json_array();
    for (size_t i = 0; i < n_ops; i++) json_array_append_new(ops, json_string(l->cid[i]));
    for (size_t i = 0; expected && expected[i]; i++) json_array_append_new(exp, json_string(expected[i]));
    return json_pack("{s:i, s:s, s:o, s:o}", "version", 1, "did", l->did, "ops", ops, "expected", exp);
}

Test(plc_custody, watch_compare_first_run_unchanged_expected_and_unexpected) {
    scene s;
    scene_build(&s, true);
    err_t e;
    err_clear(&e);
    plc_history h;
    plc_watch_result r;
    int64_t now = T0 + 3 * HOUR_MS;

    history_of(&s, &h);
    cr_assert_eq(plc_watch_compare(NULL, &h, now, &r, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(r.outcome, PLC_WATCH_FIRST_RUN);
    cr_assert_eq(r.h.n, 3, "the history moved into the result");
    cr_assert_eq(h.n, 0);
    plc_watch_result_free(&r);

    json_t *st = state_with(&s.l, 3, NULL);
    history_of(&s, &h);
    cr_assert_eq(plc_watch_compare(st, &h, now, &r, &e), ERR_OK);
    cr_assert_eq(r.outcome, PLC_WATCH_UNCHANGED);
    plc_watch_result_free(&r);
    json_decref(st);

    const char *exp[] = {s.l.cid[1], s.l.cid[2], NULL};
    st = state_with(&s.l, 1, exp);
    history_of(&s, &h);
    cr_assert_eq(plc_watch_compare(st, &h, now, &r, &e), ERR_OK);
    cr_assert_eq(r.outcome, PLC_WATCH_EXPECTED);
    cr_assert_eq(r.n_ops, 2);
    cr_assert(r.ops[0].expected && r.ops[1].expected);
    plc_watch_result_free(&r);
    json_decref(st);

    const char *exp1[] = {s.l.cid[1], NULL};
    st = state_with(&s.l, 1, exp1);
    history_of(&s, &h);
    cr_assert_eq(plc_watch_compare(st, &h, now, &r, &e), ERR_OK);
    cr_assert_eq(r.outcome, PLC_WATCH_UNEXPECTED);
    cr_assert_eq(r.first_bad, 2);
    cr_assert_eq(r.fork, 1, "recover --to-before the op pdsmove made");
    cr_assert_eq(r.deadline_ms, T0 + 2 * HOUR_MS + PLC_RECOVERY_WINDOW_MS);
    cr_assert(r.recoverable);
    plc_watch_result_free(&r);
    history_of(&s, &h);
    cr_assert_eq(plc_watch_compare(st, &h, T0 + 2 * HOUR_MS + PLC_RECOVERY_WINDOW_MS + 1, &r, &e), ERR_OK);
    cr_assert_eq(r.outcome, PLC_WATCH_UNEXPECTED);
    cr_assert_not(r.recoverable, "past the window");
    plc_watch_result_free(&r);
    json_decref(st);
    scene_free(&s);
}

Test(plc_custody, watch_compare_accepts_undone_ops_and_flags_a_rewritten_log_or_another_did) {
    scene s;
    scene_build(&s, true);
    err_t e;
    err_clear(&e);
    int64_t now = T0 + 3 * HOUR_MS;
    /* recover the bad op: the recovery is expected, the bad op is nullified → fine */
    plc_history h;
    history_of(&s, &h);
    plc_op op;
    plc_recover_plan plan;
    cr_assert_eq(plc_recover_prepare(&h, s.l.cid[1], s.u.did, now, &op, &plan, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(plc_op_sign(&op, &s.u.k, &e), ERR_OK);
    plc_history_free(&h);
    json_object_set_new(json_array_get(s.l.log, 2), "nullified", json_true());
    tlog_add(&s.l, &op, 3 * HOUR_MS, false);
    const char *exp[] = {s.l.cid[1], s.l.cid[3], NULL};
    json_t *st = state_with(&s.l, 1, exp);
    plc_watch_result r;
    history_of(&s, &h);
    cr_assert_eq(plc_watch_compare(st, &h, now, &r, &e), ERR_OK);
    cr_assert_eq(r.outcome, PLC_WATCH_EXPECTED, "an undone op is no alarm");
    cr_assert_eq(r.n_ops, 3);
    cr_assert_not(r.ops[1].expected);
    plc_watch_result_free(&r);
    json_decref(st);
    /* a recorded op the log no longer has */
    st = state_with(&s.l, 2, NULL);
    json_array_set_new(json_object_get(st, "ops"), 1, json_string("bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm"));
    history_of(&s, &h);
    cr_assert_eq(plc_watch_compare(st, &h, now, &r, &e), ERR_OK);
    cr_assert_eq(r.outcome, PLC_WATCH_INCONSISTENT);
    cr_assert(strstr(r.detail, "operation #1"), "%s", r.detail);
    plc_watch_result_free(&r);
    /* a state file of another DID */
    json_object_set_new(st, "did", json_string("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"));
    history_of(&s, &h);
    cr_assert_eq(plc_watch_compare(st, &h, now, &r, &e), ERR_USAGE);
    cr_assert(strstr(e.msg, "one state file per account"), "%s", e.msg);
    plc_watch_result_free(&r);
    json_decref(st);
    scene_free(&s);
}

Test(plc_custody, watch_state_file_is_0600_atomic_and_expect_keeps_a_bounded_list, .fini = cleanup) {
    err_t e;
    err_clear(&e);
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("sub/dir/state.json"));
    /* nothing there: expect without create says so and creates nothing */
    cr_assert_eq(plc_watch_expect(path, "bafyone", false, &e), ERR_NOT_FOUND);
    struct stat sb;
    cr_assert_neq(stat(path, &sb), 0);
    cr_assert_eq(plc_watch_expect(path, "bafyone", true, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600, "mode %o", sb.st_mode & 0777);
    for (int i = 0; i < PLC_WATCH_EXPECTED_MAX + 5; i++) {
        char cid[32];
        snprintf(cid, sizeof cid, "bafy%d", i);
        cr_assert_eq(plc_watch_expect(path, cid, false, &e), ERR_OK, "%s", e.msg);
    }
    cr_assert_eq(plc_watch_expect(path, "bafy68", false, &e), ERR_OK, "a duplicate is not added twice");
    json_t *st;
    cr_assert_eq(plc_watch_load(path, &st, &e), ERR_OK, "%s", e.msg);
    json_t *exp = json_object_get(st, "expected");
    cr_assert_eq(json_array_size(exp), PLC_WATCH_EXPECTED_MAX);
    cr_assert_str_eq(json_string_value(json_array_get(exp, PLC_WATCH_EXPECTED_MAX - 1)), "bafy68", "newest last, oldest dropped");
    json_decref(st);
    /* no temporary file is left next to it */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s/sub/dir' | grep -q tmp", tmpdir);
    cr_assert_neq(system(cmd), 0, "a temporary file was left behind");
    /* garbage is refused with advice, and a missing file is no error for load */
    FILE *f = fopen(tmp_path("bad.json"), "w");
    fputs("{\"ops\": 3}", f);
    fclose(f);
    cr_assert_eq(plc_watch_load(tmp_path("bad.json"), &st, &e), ERR_INVALID);
    cr_assert(strstr(e.msg, "move it away"), "%s", e.msg);
    cr_assert_eq(plc_watch_load(tmp_path("none.json"), &st, &e), ERR_OK);
    cr_assert_null(st);
}

Test(plc_custody, watch_default_path_follows_the_state_directory) {
    char p[512];
    setenv("PDSMOVE_STATE_DIR", "/srv/state", 1);
    cr_assert_gt(plc_watch_default_path("did:plc:abc", p, sizeof p), 0);
    cr_assert_str_eq(p, "/srv/state/plc-watch/did:plc:abc.json");
    unsetenv("PDSMOVE_STATE_DIR");
    setenv("XDG_STATE_HOME", "/x", 1);
    plc_watch_default_path("did:plc:abc", p, sizeof p);
    cr_assert_str_eq(p, "/x/pdsmove/plc-watch/did:plc:abc.json");
    unsetenv("XDG_STATE_HOME");
    setenv("HOME", "/home/u", 1);
    plc_watch_default_path("did:plc:abc", p, sizeof p);
    cr_assert_str_eq(p, "/home/u/.local/state/pdsmove/plc-watch/did:plc:abc.json");
    char tiny[8];
    cr_assert_eq(plc_watch_default_path("did:plc:abc", tiny, sizeof tiny), 0);
}

/* ------------------------------------------------------------------ the emailed token */

Test(plc_custody, token_shape) {
    cr_assert(plc_token_shape_ok("ABCDE-12345"));
    cr_assert(plc_token_shape_ok("abcde"));
    cr_assert_not(plc_token_shape_ok("abcd"));
    cr_assert_not(plc_token_shape_ok("ABCDE 12345"));
    cr_assert_not(plc_token_shape_ok("ABCDE-12345\n"));
    cr_assert_not(plc_token_shape_ok("ABC'E-12345"));
    char long_tok[80];
    memset(long_tok, 'A', 65);
    long_tok[65] = 0;
    cr_assert_not(plc_token_shape_ok(long_tok));
}

static void make_account_db(const char *path, const char *did, const char *token) {
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "CREATE TABLE email_token (purpose TEXT, did TEXT, token TEXT, requestedAt TEXT)", NULL, NULL, NULL),
                 SQLITE_OK);
    char sql[400];
    if (token) {
        snprintf(sql, sizeof sql, "INSERT INTO email_token VALUES ('plc_operation', '%s', '%s', 'now')", did, token);
        cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    snprintf(sql, sizeof sql, "INSERT INTO email_token VALUES ('confirm_email', '%s', 'WRONG-PURPOSE', 'now')", did);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

Test(plc_custody, token_from_the_pds_database_file_and_nowhere, .fini = cleanup) {
    err_t e;
    err_clear(&e);
    char db1[512], db2[512], tokf[512];
    snprintf(db1, sizeof db1, "%s", tmp_path("account.sqlite"));
    snprintf(db2, sizeof db2, "%s", tmp_path("empty.sqlite"));
    make_account_db(db1, "did:plc:x", "ABCDE-23456");
    make_account_db(db2, "did:plc:x", NULL);
    char tok[PLC_TOKEN_MAX];
    plc_token_source src = {.did = "did:plc:x", .token_db = db1, .db_wait_s = 1};
    cr_assert_eq(plc_token_obtain(&src, tok, sizeof tok, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(tok, "ABCDE-23456");
    src.did = "did:plc:other";
    cr_assert_eq(plc_token_from_db(db1, "did:plc:other", 0, NULL, tok, sizeof tok, &e), ERR_NOT_FOUND);
    cr_assert_eq(plc_token_from_db(db2, "did:plc:x", 0, "the old PDS's", tok, sizeof tok, &e), ERR_NOT_FOUND);
    /* not a PDS database */
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(tmp_path("other.sqlite"), &db), SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL);
    sqlite3_close(db);
    cr_assert_eq(plc_token_from_db(tmp_path("other.sqlite"), "did:plc:x", 0, NULL, tok, sizeof tok, &e), ERR_IO);
    cr_assert(strstr(e.msg, "email_token"), "%s", e.msg);
    /* from a file written after the request; a malformed token is refused and wiped */
    snprintf(tokf, sizeof tokf, "%s", tmp_path("token"));
    FILE *f = fopen(tokf, "w");
    fputs("FGHIJ-34567 \n", f);
    fclose(f);
    plc_token_source fs = {.did = "did:plc:x", .token_file = tokf, .requested_at = time(NULL) - 1, .file_wait_s = 1};
    /* a token file others can read is refused, naming the chmod */
    cr_assert_eq(chmod(tokf, 0644), 0);
    cr_assert_eq(plc_token_obtain(&fs, tok, sizeof tok, &e), ERR_USAGE);
    cr_assert(strstr(e.msg, "chmod 600") && strstr(e.msg, tokf), "%s", e.msg);
    cr_assert_eq(tok[0], 0, "the refused token is wiped");
    cr_assert_eq(chmod(tokf, 0600), 0);
    cr_assert_eq(plc_token_obtain(&fs, tok, sizeof tok, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(tok, "FGHIJ-34567");
    f = fopen(tokf, "w");
    fputs("not a token!\n", f);
    fclose(f);
    cr_assert_eq(plc_token_obtain(&fs, tok, sizeof tok, &e), ERR_USAGE);
    cr_assert_eq(tok[0], 0, "the refused token is wiped");
    /* a file older than the request is not taken: it waits, then says so */
    fs.requested_at = time(NULL) + 100;
    cr_assert_eq(plc_token_obtain(&fs, tok, sizeof tok, &e), ERR_NOT_FOUND);
    /* no source at all */
    plc_token_source none = {.did = "did:plc:x"};
    cr_assert_eq(plc_token_obtain(&none, tok, sizeof tok, &e), ERR_USAGE);
    cr_assert(strstr(e.msg, "--plc-token-file"), "%s", e.msg);
}

/* ------------------------------------------------------------------ the command line (no server) */

/* Runs PDSMOVE_BIN with args; returns the exit status, stdout+stderr in out (NUL-terminated). */
static int run_cli(const char *const *args, char *out, size_t size) {
    const char *bin = getenv("PDSMOVE_BIN");
    cr_assert_not_null(bin, "PDSMOVE_BIN is not set: run these tests through `zig build test`");
    const char *argv[24] = {bin};
    size_t n = 1;
    for (; args[n - 1] && n < 23; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s", tmp_path("cli.out"));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(out, 1, size - 1, f) : 0;
    if (f) fclose(f);
    out[got] = 0;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

Test(plc_custody, cli_help_names_every_command_and_the_watch_exit_codes, .fini = cleanup) {
    static char out[32768];
    const char *plc_help[] = {"plc", "--help", NULL};
    cr_assert_eq(run_cli(plc_help, out, sizeof out), 0);
    const char *cmds[] = {"show ACCOUNT", "watch ACCOUNT", "add-rotation-key ACCOUNT --key FILE", "recover ACCOUNT", "verify-log FILE",
                          "key generate"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) cr_assert(strstr(out, cmds[i]), "plc --help lacks '%s': %s", cmds[i], out);
    const char *watch_help[] = {"plc", "watch", "--help", NULL};
    cr_assert_eq(run_cli(watch_help, out, sizeof out), 0);
    cr_assert(strstr(out, "  3  an operation no pdsmove run made") && strstr(out, "  5  the directory's log"), "%s", out);
    const char *recover_help[] = {"plc", "recover", "--help", NULL};
    cr_assert_eq(run_cli(recover_help, out, sizeof out), 0);
    cr_assert(strstr(out, "72 hours") && strstr(out, "last GOOD operation"), "%s", out);
    const char *add_help[] = {"plc", "add-rotation-key", "--help", NULL};
    cr_assert_eq(run_cli(add_help, out, sizeof out), 0);
    cr_assert(strstr(out, "--plc-token-from-db") && strstr(out, "first"), "%s", out);
}

Test(plc_custody, cli_usage_errors_exit_2_before_touching_the_network, .fini = cleanup) {
    static char out[8192];
    static const char *const bad[][10] = {
        {"plc", "show", NULL},
        {"plc", "show", "a.test", "b.test", NULL},
        {"plc", "show", "not a handle", NULL},
        {"plc", "show", "a.test", "--state", "f", NULL},
        {"plc", "show", "a.test", "--plc-url", "ftp://x", NULL},
        {"plc", "watch", "a.test", "--key", "k", NULL},
        {"plc", "watch", "a.test", "--state", NULL},
        {"plc", "add-rotation-key", "a.test", NULL},
        {"plc", "add-rotation-key", "a.test", "--key", "k", "--plc-token-file", "t", "--plc-token-from-db", "d", NULL},
        {"plc", "recover", "a.test", "--key", "k", NULL},
        {"plc", "recover", "a.test", "--to-before", "bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm", NULL},
        {"plc", "recover", "a.test", "--key", "k", "--to-before", "not-a-cid", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int st = run_cli(bad[i], out, sizeof out);
        cr_assert_eq(st, 2, "case %zu: exit %d: %s", i, st, out);
        cr_assert(strstr(out, "pdsmove: error:") && strstr(out, "--help"), "case %zu: %s", i, out);
    }
}
