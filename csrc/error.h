/* error.h — filling the caller's struct rwkv_error, and the one check macro.
 *
 * Every fallible function follows the same shape:
 *     int rc = RWKV_OK;
 *     RWKV_CHECK(n < cap, RWKV_ERR_FORMAT, "field %s: ...", name);
 *     ...
 * fail:
 *     cleanup; return rc;
 * so cleanup lives in one place and no error state is global.
 */
#ifndef RWKV_ERROR_H
#define RWKV_ERROR_H

#include "rwkvfast.h"

/* Formats the message into err (if not NULL) and returns `code`. */
int rwkv_set_error(struct rwkv_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Needs `int rc`, `struct rwkv_error *err` and a `fail:` label in scope. */
#define RWKV_CHECK(cond, code, ...)                                  \
    do {                                                             \
        if (!(cond)) {                                               \
            rc = rwkv_set_error(err, (code), __VA_ARGS__);           \
            goto fail;                                               \
        }                                                            \
    } while (0)

/* Propagate a status from a callee that already filled err. */
#define RWKV_TRY(expr)                                               \
    do {                                                             \
        rc = (expr);                                                 \
        if (rc != RWKV_OK) goto fail;                                \
    } while (0)

#endif
