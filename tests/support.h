/* support.h - helpers shared by the tests. */
#ifndef CH_TEST_SUPPORT_H
#define CH_TEST_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mdb.h"

/* The message store of the dev database, from MESSAGE_STORE_CONNECTION_STRING.
 * Fails the test with a hint when it is not set. */
const char *ch_test_store_url(void);

/* The view database, from DATABASE_URL. */
const char *ch_test_view_url(void);

/* A connected client for the message store; fails the test if it cannot. */
chd_mdb *ch_test_connect(void);

/* A category name no other test run uses: "<prefix>" + 16 hex digits. */
void ch_test_unique_category(const char *prefix, char *buf, size_t size);

#endif
