/* err: an error code plus a one-line message naming the call, the address and the reason. */
#ifndef SOCKFLOW_ERR_H
#define SOCKFLOW_ERR_H

#include <stddef.h>
#include <sys/socket.h>

/* Results: >= 0 success, SF_EAGAIN "not ready" (never a failure), other negatives fail.
 * Failures are negative errno values (-ECONNREFUSED ...) or one of the codes below. */
#define SF_EAGAIN   (-11)      /* equal to -EAGAIN on Linux */
#define SF_EADDR    (-10001)   /* an address could not be parsed or resolved */
#define SF_EUSAGE   (-10002)   /* bad argument given by the caller */

#define SF_ERR_MSG_MAX 256

/* Filled by a failing call where a person will read the result. */
typedef struct sf_err {
    int code;                   /* the negative result the call returned */
    char msg[SF_ERR_MSG_MAX];   /* "connect 127.0.0.1:7: Connection refused" */
    /* The address the failure was about (127.0.0.1:7 above), so a caller can act on it
     * without reading msg; addr.ss_family is AF_UNSPEC (0) when there is none. */
    struct sockaddr_storage addr;
    socklen_t addrlen;
} sf_err;

/* Set err (if not NULL) to code and a printf-formatted message; returns code so that
 * a caller can write `return sf_err_set(err, -errno, "bind %s", a)`. When code is a
 * negative errno, ": strerror" is appended. */
int sf_err_set(sf_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record in err (if not NULL) the address the failure set by sf_err_set was about;
 * sf_err_set clears it. len beyond sizeof(err->addr) is cut. */
void sf_err_set_addr(sf_err *err, const struct sockaddr *sa, socklen_t len);

/* Human text for a result code (strerror for errno values). Never NULL. */
const char *sf_strerror(int code);

/* Symbolic name for a result code: "ECONNREFUSED", "EAGAIN", "SF_EADDR"; "E?" if unknown. */
const char *sf_errname(int code);

#endif
