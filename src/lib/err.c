/* err: error codes and one-line messages. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sockflow/sockflow.h"

int
sf_err_set(sf_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL)
        return code;
    err->code = code;
    err->addr.ss_family = AF_UNSPEC;
    err->addrlen = 0;
    va_start(ap, fmt);
    n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        err->msg[0] = '\0';
    else if ((size_t)n >= sizeof(err->msg))
        n = (int)sizeof(err->msg) - 1;
    if (code < 0 && code > -4096 && n >= 0)
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", sf_strerror(code));
    return code;
}

void
sf_err_set_addr(sf_err *err, const struct sockaddr *sa, socklen_t len)
{
    if (err == NULL || sa == NULL)
        return;
    if (len > sizeof(err->addr))
        len = sizeof(err->addr);
    memcpy(&err->addr, sa, len);
    err->addrlen = len;
}

const char *
sf_strerror(int code)
{
    switch (code) {
    case SF_EADDR:  return "Bad address";
    case SF_EUSAGE: return "Invalid argument";
    default:
        if (code < 0 && code > -4096)
            return strerror(-code);
        return code >= 0 ? "Success" : "Unknown error";
    }
}

/* One table makes the names; errno values not listed print as "E?". */
#define SF_ERRNO_MAP(X) \
    X(EPERM) X(ENOENT) X(EINTR) X(EIO) X(EBADF) X(EAGAIN) X(ENOMEM) X(EACCES) \
    X(EFAULT) X(EBUSY) X(EEXIST) X(EINVAL) X(ENFILE) X(EMFILE) X(ENOSPC) X(EPIPE) \
    X(ENOTSOCK) X(EDESTADDRREQ) X(EMSGSIZE) X(EPROTOTYPE) X(ENOPROTOOPT) \
    X(EPROTONOSUPPORT) X(EOPNOTSUPP) X(EAFNOSUPPORT) X(EADDRINUSE) X(EADDRNOTAVAIL) \
    X(ENETDOWN) X(ENETUNREACH) X(ECONNABORTED) X(ECONNRESET) X(ENOBUFS) X(EISCONN) \
    X(ENOTCONN) X(ETIMEDOUT) X(ECONNREFUSED) X(EHOSTDOWN) X(EHOSTUNREACH) \
    X(EALREADY) X(EINPROGRESS) X(EPROTO) X(ENONET)

const char *
sf_errname(int code)
{
    if (code == SF_EADDR)
        return "SF_EADDR";
    if (code == SF_EUSAGE)
        return "SF_EUSAGE";
    if (code == 0)
        return "OK";
    switch (code < 0 ? -code : code) {
#define SF_ERRNO_CASE(e) case e: return #e;
    SF_ERRNO_MAP(SF_ERRNO_CASE)
#undef SF_ERRNO_CASE
    default: return "E?";
    }
}

const char *
sf_version(void)
{
    return SOCKFLOW_VERSION;
}
