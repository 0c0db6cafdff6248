/* error.c — the single place that writes error messages. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int rwkv_set_error(struct rwkv_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}
