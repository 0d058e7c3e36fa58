/* errors.c - lookups into the CP_ERRNO_MAP table and the cp_err helper. */
#include "base.h"

#include <stdarg.h>
#include <stdio.h>

struct errdesc {
    const char *name;
    const char *msg;
    int http;
    int grpc;
};

static const struct errdesc table[CP_I__COUNT] = {
#define CP_X_DESC(name, msg, http, grpc) [CP_I_##name] = {#name, msg, http, grpc},
    CP_ERRNO_MAP(CP_X_DESC)
#undef CP_X_DESC
};

static const struct errdesc *lookup(int code)
{
    int i = -code - 1;
    if (i < 0 || i >= CP_I__COUNT)
        return &table[CP_I_EINTERNAL];
    return &table[i];
}

const char *cp_errname(int code) { return code == 0 ? "OK" : lookup(code)->name; }
const char *cp_strerror(int code) { return code == 0 ? "success" : lookup(code)->msg; }
int cp_http_status(int code) { return code == 0 ? 200 : lookup(code)->http; }
int cp_grpc_status(int code) { return code == 0 ? 0 : lookup(code)->grpc; }

int cp_err_set(struct cp_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *cp_err_text(const struct cp_err *err)
{
    if (!err)
        return "";
    return err->msg[0] ? err->msg : cp_strerror(err->code);
}
