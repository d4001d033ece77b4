/*
 * check_store.c: the SQLite state store in a fresh mkdtemp directory:
 * tables created, blocks written, removed and read back after reopening,
 * an audit row for every change, and a clear error naming the path when
 * the directory is missing or not writable.
 */
#include "config.h"

#include "err.h"
#include "store.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/check_store.XXXXXX";
static char path[300];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/check_store.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/state.db", dir);
}

static void teardown(void)
{
    char sub[400];
    (void)unlink(path);
    snprintf(sub, sizeof(sub), "%s/ro", dir);
    (void)chmod(sub, 0700);
    (void)rmdir(sub);
    (void)rmdir(dir);
}

/* Collects the blocks as "domain by at" lines. */
struct rows {
    char text[1024];
    size_t n;
};

static int
collect_block(void *ud, const char *domain, const char *who, long long at)
{
    struct rows *r = ud;
    size_t len = strlen(r->text);
    snprintf(r->text + len, sizeof(r->text) - len, "%s %s %lld\n", domain, who,
             at);
    r->n++;
    return 0;
}

static int
collect_audit(void *ud, long long at, const char *who, const char *what)
{
    struct rows *r = ud;
    size_t len = strlen(r->text);
    snprintf(r->text + len, sizeof(r->text) - len, "%lld %s %s\n", at, who,
             what);
    r->n++;
    return 0;
}

static int
stop_walk(void *ud, const char *domain, const char *who, long long at)
{
    (void)ud;
    (void)domain;
    (void)who;
    (void)at;
    return ERR_INVAL;
}

static struct store *open_ok(void)
{
    char err[512] = "";
    struct store *st = NULL;
    int rc = store_open(path, &st, err, sizeof(err));
    ck_assert_msg(rc == 0, "store_open: %s", err);
    ck_assert_ptr_nonnull(st);
    return st;
}

START_TEST(test_create_empty)
{
    struct store *st = open_ok();
    struct rows r = {.n = 0};
    ck_assert_int_eq(store_blocks(st, collect_block, &r), 0);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_int_eq(store_audit_rows(st, collect_audit, &r), 0);
    ck_assert_uint_eq(r.n, 0);
    store_free(st);
    ck_assert_int_eq(access(path, F_OK), 0);
}
END_TEST

START_TEST(test_block_unblock_reload)
{
    struct store *st = open_ok();
    ck_assert_int_eq(store_block(st, "evil.test", "admin@a.test", 100), 0);
    ck_assert_int_eq(store_block(st, "bad.test", "root@a.test", 101), 0);
    /* again: by and at are updated, still one row */
    ck_assert_int_eq(store_block(st, "evil.test", "root@a.test", 102), 0);
    ck_assert_int_eq(store_unblock(st, "bad.test", "admin@a.test", 103), 0);
    ck_assert_int_eq(store_unblock(st, "bad.test", "admin@a.test", 104),
                     ERR_NOT_FOUND);
    store_free(st);

    st = open_ok(); /* what a restart sees */
    struct rows r = {.n = 0};
    ck_assert_int_eq(store_blocks(st, collect_block, &r), 0);
    ck_assert_uint_eq(r.n, 1);
    ck_assert_str_eq(r.text, "evil.test root@a.test 102\n");
    ck_assert_int_eq(store_blocks(st, stop_walk, NULL), ERR_INVAL);
    store_free(st);
}
END_TEST

START_TEST(test_audit_rows)
{
    struct store *st = open_ok();
    ck_assert_int_eq(store_block(st, "evil.test", "admin@a.test", 100), 0);
    ck_assert_int_eq(
        store_audit(st, "admin@a.test", "disconnect a.test -> b.test", 101), 0);
    ck_assert_int_eq(store_unblock(st, "evil.test", "root@a.test", 102), 0);
    /* a refused unblock writes nothing */
    ck_assert_int_eq(store_unblock(st, "evil.test", "root@a.test", 103),
                     ERR_NOT_FOUND);
    store_free(st);
    st = open_ok();
    struct rows r = {.n = 0};
    ck_assert_int_eq(store_audit_rows(st, collect_audit, &r), 0);
    ck_assert_uint_eq(r.n, 3);
    ck_assert_str_eq(r.text, "100 admin@a.test block evil.test\n"
                             "101 admin@a.test disconnect a.test -> b.test\n"
                             "102 root@a.test unblock evil.test\n");
    store_free(st);
}
END_TEST

START_TEST(test_audit_last)
{
    struct store *st = open_ok();
    struct rows r = {.n = 0};
    /* an empty log walks nothing */
    ck_assert_int_eq(store_audit_last(st, 20, collect_audit, &r), 0);
    ck_assert_uint_eq(r.n, 0);
    for (long long i = 0; i < 5; i++) {
        char what[32];
        snprintf(what, sizeof(what), "op %lld", i);
        ck_assert_int_eq(store_audit(st, "admin@a.test", what, 100 + i), 0);
    }
    /* the newest n, newest first */
    ck_assert_int_eq(store_audit_last(st, 2, collect_audit, &r), 0);
    ck_assert_uint_eq(r.n, 2);
    ck_assert_str_eq(r.text, "104 admin@a.test op 4\n"
                             "103 admin@a.test op 3\n");
    /* more than there are: all of them */
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(store_audit_last(st, 20, collect_audit, &r), 0);
    ck_assert_uint_eq(r.n, 5);
    ck_assert_str_eq(r.text, "104 admin@a.test op 4\n"
                             "103 admin@a.test op 3\n"
                             "102 admin@a.test op 2\n"
                             "101 admin@a.test op 1\n"
                             "100 admin@a.test op 0\n");
    /* none asked for, none walked */
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(store_audit_last(st, 0, collect_audit, &r), 0);
    ck_assert_uint_eq(r.n, 0);
    store_free(st);
}
END_TEST

START_TEST(test_missing_directory)
{
    char bad[400];
    char err[512] = "";
    struct store *st = (struct store *)&err; /* must be reset */
    snprintf(bad, sizeof(bad), "%s/no/such/dir/state.db", dir);
    ck_assert_int_eq(store_open(bad, &st, err, sizeof(err)), ERR_SYS);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(err, bad) != NULL, "error does not name the path: %s",
                  err);
}
END_TEST

START_TEST(test_unwritable_directory)
{
    char sub[400];
    char bad[420];
    char err[512] = "";
    struct store *st = NULL;
    if (geteuid() == 0) {
        /* root writes anywhere: nothing to test */
        return;
    }
    snprintf(sub, sizeof(sub), "%s/ro", dir);
    ck_assert_int_eq(mkdir(sub, 0500), 0);
    snprintf(bad, sizeof(bad), "%s/state.db", sub);
    ck_assert_int_eq(store_open(bad, &st, err, sizeof(err)), ERR_SYS);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(err, bad) != NULL, "error does not name the path: %s",
                  err);
}
END_TEST

/* Root writes anywhere, but not below a regular file. */
START_TEST(test_parent_is_a_file)
{
    char file[400];
    char bad[420];
    char err[512] = "";
    struct store *st = NULL;
    snprintf(file, sizeof(file), "%s/plain", dir);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(bad, sizeof(bad), "%s/state.db", file);
    ck_assert_int_eq(store_open(bad, &st, err, sizeof(err)), ERR_SYS);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(err, bad) != NULL, "error does not name the path: %s",
                  err);
    ck_assert_int_eq(unlink(file), 0);
}
END_TEST

START_TEST(test_empty_path)
{
    char err[128] = "";
    struct store *st = NULL;
    ck_assert_int_eq(store_open("", &st, err, sizeof(err)), ERR_INVAL);
    ck_assert_ptr_null(st);
    store_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_create_empty);
    tcase_add_test(tc, test_block_unblock_reload);
    tcase_add_test(tc, test_audit_rows);
    tcase_add_test(tc, test_audit_last);
    tcase_add_test(tc, test_missing_directory);
    tcase_add_test(tc, test_unwritable_directory);
    tcase_add_test(tc, test_parent_is_a_file);
    tcase_add_test(tc, test_empty_path);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
