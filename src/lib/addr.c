/* addr: parse "host:port" and "unix:" forms, resolve with getaddrinfo, format back. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "sockflow/addr.h"

static int
copy_part(const char *p, size_t n, char *out, size_t outlen)
{
    if (n >= outlen)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

int
sf_addr_split(const char *text, char *host, size_t hostlen, char *port, size_t portlen,
              sf_err *err)
{
    const char *colon;

    if (text == NULL)
        return sf_err_set(err, SF_EADDR, "address (null): missing");
    host[0] = port[0] = '\0';
    if (text[0] == '[') {
        const char *end = strchr(text, ']');

        if (end == NULL)
            return sf_err_set(err, SF_EADDR, "address %s: missing ']'", text);
        if (copy_part(text + 1, (size_t)(end - text - 1), host, hostlen) < 0)
            return sf_err_set(err, SF_EADDR, "address %s: host too long", text);
        if (end[1] == '\0')
            return 0;
        if (end[1] != ':')
            return sf_err_set(err, SF_EADDR, "address %s: expected ':' after ']'", text);
        if (copy_part(end + 2, strlen(end + 2), port, portlen) < 0)
            return sf_err_set(err, SF_EADDR, "address %s: port too long", text);
        return 0;
    }
    colon = strrchr(text, ':');
    if (colon != NULL && strchr(text, ':') != colon) {
        /* several colons and no brackets: a bare IPv6 literal, no port */
        if (copy_part(text, strlen(text), host, hostlen) < 0)
            return sf_err_set(err, SF_EADDR, "address %s: host too long", text);
        return 0;
    }
    if (colon == NULL) {
        if (copy_part(text, strlen(text), host, hostlen) < 0)
            return sf_err_set(err, SF_EADDR, "address %s: host too long", text);
        return 0;
    }
    if (copy_part(text, (size_t)(colon - text), host, hostlen) < 0 ||
        copy_part(colon + 1, strlen(colon + 1), port, portlen) < 0)
        return sf_err_set(err, SF_EADDR, "address %s: too long", text);
    return 0;
}

int
sf_addr_parse_port(const char *text, sf_err *err)
{
    char *end;
    long v;

    if (text == NULL || text[0] < '0' || text[0] > '9')
        return sf_err_set(err, SF_EADDR, "port %s: not a number from 0 to 65535",
                          text ? text : "(none)");
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > 65535)
        return sf_err_set(err, SF_EADDR, "port %s: not a number from 0 to 65535", text);
    return (int)v;
}

int
sf_addr_is_unix(const char *text)
{
    return text != NULL && strncmp(text, SF_ADDR_UNIX_PREFIX, strlen(SF_ADDR_UNIX_PREFIX)) == 0;
}

int
sf_addr_parse_unix(const char *text, sf_addr *a, sf_err *err)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
    const char *name;
    size_t n;

    if (!sf_addr_is_unix(text))
        return sf_err_set(err, SF_EADDR, "address %s: not unix:/path or unix:@name",
                          text ? text : "(null)");
    name = text + strlen(SF_ADDR_UNIX_PREFIX);
    n = strlen(name);
    if (n == 0 || (name[0] == '@' && n == 1))
        return sf_err_set(err, SF_EADDR, "address %s: empty path", text);
    /* A path needs its terminating NUL inside sun_path; an abstract name does not. */
    if (n >= sizeof(un->sun_path))
        return sf_err_set(err, SF_EADDR, "address %s: longer than %zu bytes", text,
                          sizeof(un->sun_path) - 1);
    memset(a, 0, sizeof(*a));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, name, n);
    if (name[0] == '@') {
        /* Abstract: a NUL first, and the length, not a NUL, ends the name. */
        un->sun_path[0] = '\0';
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

const char *
sf_addr_unix_path(const sf_addr *a)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;

    if (a->ss.ss_family != AF_UNIX || a->len <= offsetof(struct sockaddr_un, sun_path) ||
        un->sun_path[0] == '\0')
        return NULL;
    return un->sun_path;
}

/* One Unix address as a resolution's whole result. */
static int
resolve_unix(const char *text, sf_addr_list *out, sf_err *err)
{
    int rc = sf_addr_parse_unix(text, &out->a[0], err);

    if (rc < 0)
        return rc;
    out->n = 1;
    return 1;
}

static void
join_host_port(const char *host, const char *port, char *buf, size_t len)
{
    if (strchr(host, ':') != NULL)
        snprintf(buf, len, "[%s]:%s", host, port);
    else
        snprintf(buf, len, "%s:%s", host, port);
}

int
sf_addr_resolve(const char *host, const char *port, int flags, sf_addr_list *out,
                sf_err *err)
{
    struct addrinfo hints, *res, *ai;
    char shown[320];
    int rc;

    if (sf_addr_is_unix(host))
        return resolve_unix(host, out, err);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = (flags & SF_ADDR_V4ONLY) ? AF_INET
                    : (flags & SF_ADDR_V6ONLY) ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = (flags & SF_ADDR_DGRAM) ? SOCK_DGRAM : SOCK_STREAM;
    if (flags & SF_ADDR_NUMERIC)
        hints.ai_flags |= AI_NUMERICHOST;
    if (host != NULL && host[0] == '\0')
        host = NULL;
    if (host == NULL && (flags & SF_ADDR_PASSIVE))
        hints.ai_flags |= AI_PASSIVE;
    if (port == NULL || port[0] == '\0')
        return sf_err_set(err, SF_EADDR, "address %s: missing port", host ? host : "");
    join_host_port(host ? host : "", port, shown, sizeof(shown));
    if (port[0] >= '0' && port[0] <= '9') {
        if (sf_addr_parse_port(port, NULL) < 0)
            return sf_err_set(err, SF_EADDR, "port %s: not a number from 0 to 65535", port);
        hints.ai_flags |= AI_NUMERICSERV;
    }
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        if (rc == EAI_SYSTEM)
            return sf_err_set(err, -errno, "resolve %s", shown);
        return sf_err_set(err, SF_EADDR, "resolve %s: %s", shown, gai_strerror(rc));
    }
    out->n = 0;
    for (ai = res; ai != NULL && out->n < SF_ADDR_MAX; ai = ai->ai_next) {
        int dup = 0;

        for (int i = 0; i < out->n; i++)
            if (out->a[i].len == ai->ai_addrlen &&
                memcmp(&out->a[i].ss, ai->ai_addr, ai->ai_addrlen) == 0)
                dup = 1;
        if (!dup)
            sf_addr_from_sa(&out->a[out->n++], ai->ai_addr, ai->ai_addrlen);
    }
    freeaddrinfo(res);
    if (out->n == 0)
        return sf_err_set(err, SF_EADDR, "resolve %s: no usable address", shown);
    return out->n;
}

int
sf_addr_resolve_text(const char *text, const char *default_port, int flags,
                     sf_addr_list *out, sf_err *err)
{
    char host[256], port[64];
    int rc;

    if (sf_addr_is_unix(text))
        return resolve_unix(text, out, err);
    rc = sf_addr_split(text, host, sizeof(host), port, sizeof(port), err);
    if (rc < 0)
        return rc;
    if (port[0] == '\0') {
        if (default_port == NULL)
            return sf_err_set(err, SF_EADDR, "address %s: missing port", text);
        snprintf(port, sizeof(port), "%s", default_port);
    }
    return sf_addr_resolve(host, port, flags, out, err);
}

/* "unix:/path", "unix:@name" (NULs inside an abstract name shown as '@'), or "unix:"
 * for an unnamed socket. */
static void
format_unix(const struct sockaddr *sa, socklen_t salen, char *buf, size_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = salen > off ? salen - off : 0;
    char name[sizeof(un->sun_path) + 1];

    if (n > sizeof(un->sun_path))
        n = sizeof(un->sun_path);
    if (n > 0 && un->sun_path[0] != '\0')
        n = strnlen(un->sun_path, n);
    for (size_t i = 0; i < n; i++)
        name[i] = un->sun_path[i] == '\0' ? '@' : un->sun_path[i];
    name[n] = '\0';
    snprintf(buf, len, "%s%s", SF_ADDR_UNIX_PREFIX, name);
}

char *
sf_addr_format_sa(const struct sockaddr *sa, socklen_t salen, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_UNIX) {
        format_unix(sa, salen, buf, len);
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%d", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        if (in6->sin6_scope_id != 0)
            snprintf(buf, len, "[%s%%%u]:%d", host, in6->sin6_scope_id,
                     ntohs(in6->sin6_port));
        else
            snprintf(buf, len, "[%s]:%d", host, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, len, "(family %d)", sa->sa_family);
    }
    return buf;
}

char *
sf_addr_format(const sf_addr *a, char *buf, size_t len)
{
    return sf_addr_format_sa((const struct sockaddr *)&a->ss, a->len, buf, len);
}

int
sf_addr_family(const sf_addr *a)
{
    return a->ss.ss_family;
}

int
sf_addr_port(const sf_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return -1;
}

void
sf_addr_set_port(sf_addr *a, int port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
    else if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
}

int
sf_addr_is_wildcard(const sf_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return 0;
}

void
sf_addr_from_sa(sf_addr *a, const struct sockaddr *sa, socklen_t len)
{
    memset(a, 0, sizeof(*a));
    if (len > sizeof(a->ss))
        len = sizeof(a->ss);
    memcpy(&a->ss, sa, len);
    a->len = len;
}

void
sf_addr_loopback(sf_addr *a, int family, int port)
{
    memset(a, 0, sizeof(*a));
    if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons((uint16_t)port);
        a->len = sizeof(*in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;

        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons((uint16_t)port);
        a->len = sizeof(*in);
    }
}
