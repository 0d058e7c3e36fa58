/*
 * errors.h - the one error table of cachingproxy.
 *
 * Every fallible function returns 0 or a negative CP_E* code. The table gives each code its
 * name, a user-facing message, the HTTP status a plugin error carries and the gRPC status a
 * failed call gets. Mapping to HTTP or gRPC happens only at the edges (proxy pipeline, plugin
 * dispatch). Detail goes into a caller-owned struct cp_err, which never holds a secret.
 */
#ifndef CP_ERRORS_H
#define CP_ERRORS_H

#include <stddef.h>

/* X(name, message, http status, grpc status code) */
#define CP_ERRNO_MAP(X)                                                                    \
    X(EINVAL, "invalid argument", 400, 3)                                                  \
    X(ENOMEM, "out of memory", 500, 8)                                                     \
    X(ECONFIG, "invalid data source settings", 400, 9)                                     \
    X(EBADREQ, "bad request", 400, 3)                                                      \
    X(EDENIED, "denied by an authorization rule", 403, 7)                                  \
    X(ENOPATH, "path not allowed", 404, 5)                                                 \
    X(ENOTFOUND, "not found", 404, 5)                                                      \
    X(EMETHOD, "method not allowed", 405, 12)                                              \
    X(ETOOBIG, "request too large", 413, 8)                                                \
    X(EUPSTREAM, "upstream failure", 502, 14)                                              \
    X(ERESPBIG, "upstream response too large", 502, 14)                                    \
    X(ETIMEDOUT, "upstream timeout", 504, 4)                                               \
    X(ECANCELED, "request cancelled", 499, 1)                                              \
    X(EBACKEND, "cache backend failure", 503, 14)                                          \
    X(EAUTHZ, "authorization service failure", 403, 7)                                     \
    X(EMODULE, "auth module failure", 500, 13)                                             \
    X(ENOTSUP, "not supported", 501, 12)                                                   \
    X(EINTERNAL, "internal error", 500, 13)

enum cp_errno_index {
#define CP_X_INDEX(name, msg, http, grpc) CP_I_##name,
    CP_ERRNO_MAP(CP_X_INDEX)
#undef CP_X_INDEX
    CP_I__COUNT
};

enum cp_errno {
    CP_OK = 0,
#define CP_X_CODE(name, msg, http, grpc) CP_##name = -(CP_I_##name + 1),
    CP_ERRNO_MAP(CP_X_CODE)
#undef CP_X_CODE
};

/* Caller-owned error detail. msg names the offending key or path; never a secret. */
struct cp_err {
    int code;
    char msg[256];
};

/* Name ("ECONFIG"), message, HTTP status and gRPC code of an error code; unknown codes map to
 * EINTERNAL. */
const char *cp_errname(int code);
const char *cp_strerror(int code);
int cp_http_status(int code);
int cp_grpc_status(int code);

/* Fills err (may be NULL) with code and a formatted detail; returns code. */
int cp_err_set(struct cp_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The detail of err, or the table message when no detail was set. */
const char *cp_err_text(const struct cp_err *err);

#endif
