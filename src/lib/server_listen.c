/* server_listen: binding a service on its addresses, one socket per loop and address
 * and protocol, port 0 resolved once for all of them; overlapping addresses refused;
 * sockets passed in by a service manager adopted instead of bound. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sockflow/activate.h"
#include "sockflow/sock.h"
#include "server_int.h"

#define PORT_TRIES 16
#define SNDBUF_MIN (1024 * 1024)
#define SNDBUF_MAX (64 * 1024 * 1024)

/* The host part of a, for messages about addresses rather than sockets. */
static const char *
host_text(const sf_addr *a, char *buf, size_t len)
{
    const void *ip = sf_addr_family(a) == AF_INET6
        ? (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr
        : (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr;

    if (inet_ntop(sf_addr_family(a), ip, buf, (socklen_t)len) == NULL)
        snprintf(buf, len, "?");
    return buf;
}

static int
is_wildcard(const sf_addr *a)
{
    if (sf_addr_family(a) == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

/* Would a socket on a and one on b at the same port collide? IPv6 sockets are
 * IPV6_V6ONLY, so the families never do. */
static int
addrs_overlap(const sf_addr *a, const sf_addr *b)
{
    sf_addr pa = *a, pb = *b;

    if (sf_addr_family(a) != sf_addr_family(b))
        return 0;
    if (is_wildcard(a) || is_wildcard(b))
        return 1;
    sf_addr_set_port(&pa, 0);
    sf_addr_set_port(&pb, 0);
    return pa.len == pb.len && memcmp(&pa.ss, &pb.ss, pa.len) == 0;
}

/* Addresses given to one call that would take the same port twice: with port 0 no
 * port could ever be found for both, and with a port the second would fail as if
 * another server held it. Said plainly instead. */
static int
check_overlaps(const sf_addr *addrs, int naddrs, sf_err *err)
{
    for (int i = 1; i < naddrs; i++) {
        for (int j = 0; j < i; j++) {
            char hi[SF_ADDR_STRLEN], hj[SF_ADDR_STRLEN];

            if (!addrs_overlap(&addrs[i], &addrs[j]))
                continue;
            host_text(&addrs[i], hi, sizeof(hi));
            host_text(&addrs[j], hj, sizeof(hj));
            if (!is_wildcard(&addrs[j]) && !is_wildcard(&addrs[i]))
                return sf_err_set(err, SF_EUSAGE, "listen %s: given twice", hi);
            return sf_err_set(err, SF_EUSAGE, "listen %s: overlaps %s (every %s address "
                              "is in the wildcard): give one of them", hi, hj,
                              sf_addr_family(&addrs[i]) == AF_INET6 ? "IPv6" : "IPv4");
        }
    }
    return 0;
}

/* A socket this server already has at a (same protocol and port, overlapping address). */
static const sf_listener *
own_listener_at(const sf_server *s, const sf_addr *a, int proto)
{
    for (int i = 0; i < s->nlisteners; i++) {
        const sf_listener *l = &s->listeners[i];

        if (l->proto == proto && sf_addr_port(&l->addr) == sf_addr_port(a) &&
            addrs_overlap(&l->addr, a))
            return l;
    }
    return NULL;
}

/* The per-loop state of svc in w, made once and shared by all its sockets there. */
static void *
service_state(worker *w, const sf_service *svc, int *fresh)
{
    *fresh = 0;
    for (int i = 0; i < w->nls; i++)
        if (w->ls[i].svc == svc)
            return w->ls[i].state;
    if (svc->state_new == NULL)
        return NULL;
    *fresh = 1;
    return svc->state_new();
}

static int
add_lsock(worker *w, int fd, int proto, const sf_service *svc, sf_err *err)
{
    lsock *ls;
    int fresh, rc;

    if (w->nls == SF__MAX_LISTENERS)
        return sf_err_set(err, -ENOSPC, "listen: more than %d sockets", SF__MAX_LISTENERS);
    ls = &w->ls[w->nls];
    ls->fd = fd;
    ls->proto = proto;
    ls->svc = svc;
    ls->w = w;
    ls->state = service_state(w, svc, &fresh);
    if (svc->state_new && ls->state == NULL)
        return sf_err_set(err, -ENOMEM, "%s: state", svc->name);
    rc = sf_loop_watch(w->loop, fd, SF_READ,
                       proto == SF_PROTO_TCP ? sf__tcp_accept_ready : sf__udp_ready, ls);
    if (rc < 0) {
        if (fresh && svc->state_free)
            svc->state_free(ls->state);
        return sf_err_set(err, rc, "epoll_ctl");
    }
    w->nls++;
    return 0;
}

/* Undo the sockets added since mark[] (one mark per worker). */
static void
drop_lsocks_since(sf_server *s, const int *mark, int lmark)
{
    for (int i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];

        while (w->nls > mark[i]) {
            lsock *ls = &w->ls[--w->nls];
            int shared = 0;

            for (int j = 0; j < w->nls; j++)
                shared |= w->ls[j].state == ls->state;
            sf_loop_unwatch(w->loop, ls->fd);
            close(ls->fd);
            if (!shared && ls->svc->state_free && ls->state)
                ls->svc->state_free(ls->state);
        }
    }
    s->nlisteners = lmark;
}

/* Ask for each datagram's destination address, so that one sent to a broadcast or
 * multicast address (fraggle) is not answered, and a reply from the wildcard address
 * leaves from the address the request came to. */
static int
want_destination(int fd, int family, sf_err *err)
{
    int on = 1;
    int rc = family == AF_INET6
        ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on))
        : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on));

    return rc < 0 ? sf_err_set(err, -errno, "setsockopt %s", family == AF_INET6
                               ? "IPV6_RECVPKTINFO" : "IP_PKTINFO") : 0;
}

/* What one client that never reads may pin in the kernel follows the queue cap: left
 * to autotuning, the send buffer grows to 4 MiB (tcp_wmem) per connection. 1 MiB at
 * least (2 MiB in the kernel's count): a reader slower than its writer for a while (a
 * chat member during a burst) still gets its lines rather than being dropped at a cap
 * it would have kept up with before. */
static int
send_buffer(const sf_server_opts *o)
{
    size_t b = o->queue_cap > SNDBUF_MIN ? o->queue_cap : SNDBUF_MIN;

    return b > SNDBUF_MAX ? SNDBUF_MAX : (int)b;
}

static int
bind_one(sf_server *s, const sf_service *svc, const sf_addr *a, int proto, sf_err *err)
{
    /* A Unix socket file takes one socket: SO_REUSEPORT groups are for ports. */
    int loops = svc->one_loop || sf_addr_family(a) == AF_UNIX ? 1 : s->nw;
    sf_listen_opts lo = { .backlog = s->o.backlog, .reuseport = loops > 1,
                          .sndbuf = send_buffer(&s->o), .nodelay = 1 };
    sf_addr at = *a;
    int rc;

    if (s->nlisteners == SF__MAX_LISTENERS)
        return sf_err_set(err, -ENOSPC, "listen: more than %d sockets", SF__MAX_LISTENERS);
    for (int i = 0; i < loops; i++) {
        sf_trace t, *tp = sf__server_trace(s, &t, 0);
        int fd;

        lo.exclusive = i == 0;  /* the copies join the group the first one made */
        fd = proto == SF_PROTO_TCP ? sf_tcp_listen(tp, &at, &lo, err)
                                   : sf_udp_bind(tp, &at, &lo, err);

        if (fd < 0)
            return fd;
        if (i == 0)
            sf_local_addr(fd, &at);   /* port 0: the copies take the port it got */
        rc = proto == SF_PROTO_UDP && sf_addr_family(&at) != AF_UNIX
             ? want_destination(fd, sf_addr_family(&at), err) : 0;
        if (rc == 0)
            rc = add_lsock(&s->w[i], fd, proto, svc, err);
        if (rc == 0)
            s->w[i].ls[s->w[i].nls - 1].wildcard = proto == SF_PROTO_UDP && is_wildcard(&at);
        if (rc < 0) {
            close(fd);
            return rc;
        }
    }
    s->listeners[s->nlisteners++] = (sf_listener){ svc, proto, at };
    if (proto == SF_PROTO_UDP && sf_addr_family(&at) != AF_UNIX)
        sf__udpguard_add_port(s->guard, sf_addr_port(&at));
    return sf_addr_family(&at) == AF_UNIX ? 0 : sf_addr_port(&at);
}

/* Every address and protocol at port (0: the port the first one gets). */
static int
bind_all(sf_server *s, const sf_service *svc, const sf_addr *addrs, int naddrs, int port,
         unsigned protos, sf_err *err)
{
    int rc = 0;

    for (int i = 0; i < naddrs && rc >= 0; i++) {
        for (int proto = SF_PROTO_TCP; proto <= SF_PROTO_UDP && rc >= 0; proto <<= 1) {
            sf_addr a = addrs[i];
            const sf_listener *own;
            char where[SF_ADDR_STRLEN], there[SF_ADDR_STRLEN];

            /* A socket file (or abstract name) takes one socket: stream, unless only
             * datagrams are asked for (-u). */
            if (!(protos & proto) || (proto == SF_PROTO_UDP && sf_addr_family(&a) == AF_UNIX &&
                                      (protos & SF_PROTO_TCP)))
                continue;
            sf_addr_set_port(&a, port);
            if (port != 0 && (own = own_listener_at(s, &a, proto)) != NULL)
                return sf_err_set(err, SF_EUSAGE, "bind %s: this server listens on %s "
                                  "already (%s)", sf_addr_format(&a, where, sizeof(where)),
                                  sf_addr_format(&own->addr, there, sizeof(there)),
                                  own->svc->name);
            rc = bind_one(s, svc, &a, proto, err);
            if (rc >= 0)
                port = rc;
        }
    }
    return rc;
}

int
sf_server_listen(sf_server *s, const sf_service *svc, const sf_addr *addrs, int naddrs,
                 int port, unsigned protos, sf_err *err)
{
    int mark[s->nw];
    int lmark = s->nlisteners;
    int rc;

    protos &= svc->protos;
    if (protos == 0 || naddrs <= 0)
        return sf_err_set(err, SF_EUSAGE, "%s: no %s service", svc->name,
                          protos == 0 ? "such protocol for this" : "address for the");
    if ((rc = check_overlaps(addrs, naddrs, err)) < 0)
        return rc;
    for (int i = 0; i < s->nw; i++)
        mark[i] = s->w[i].nls;
    for (int attempt = 0; attempt < PORT_TRIES; attempt++) {
        rc = bind_all(s, svc, addrs, naddrs, port, protos, err);
        /* A picked port may be taken on another address or protocol: pick again. */
        if (rc >= 0 || port != 0 || rc != -EADDRINUSE)
            break;
        drop_lsocks_since(s, mark, lmark);
    }
    if (rc < 0) {
        drop_lsocks_since(s, mark, lmark);
        return rc;
    }
    return 0;
}

int
sf_server_adopt(sf_server *s, const sf_service *svc, int fd, sf_err *err)
{
    int type, family, listening, proto, rc;
    sf_addr at;

    rc = sf_sock_kind(fd, &type, &family, &listening);
    if (rc < 0) {
        close(fd);
        return sf_err_set(err, rc, "passed descriptor %d", fd);
    }
    proto = type == SOCK_DGRAM ? SF_PROTO_UDP : SF_PROTO_TCP;
    if (!(svc->protos & proto) || (proto == SF_PROTO_TCP && !listening) ||
        s->nlisteners == SF__MAX_LISTENERS) {
        close(fd);
        return sf_err_set(err, SF_EUSAGE, "passed descriptor %d: not a %s socket %s can "
                          "serve", fd, proto == SF_PROTO_TCP ? "listening stream" : "datagram",
                          svc->name);
    }
    sf_set_nonblock(fd, 1);
    sf_local_addr(fd, &at);
    rc = proto == SF_PROTO_UDP && family != AF_UNIX ? want_destination(fd, family, err) : 0;
    if (rc == 0)
        rc = add_lsock(&s->w[0], fd, proto, svc, err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    s->listeners[s->nlisteners++] = (sf_listener){ svc, proto, at };
    if (proto == SF_PROTO_UDP && sf_addr_port(&at) > 0)
        sf__udpguard_add_port(s->guard, sf_addr_port(&at));
    return 0;
}

int
sf_server_adopt_conn(sf_server *s, const sf_service *svc, int fd, sf_err *err)
{
    worker *w = &s->w[0];
    lsock *ls;
    int fresh;

    if (!(svc->protos & SF_PROTO_TCP) || w->nls == SF__MAX_LISTENERS) {
        close(fd);
        return sf_err_set(err, SF_EUSAGE, "%s: no TCP service to run on a connection",
                          svc->name);
    }
    /* A listener that listens on nothing: the connection needs one for its service. */
    ls = &w->ls[w->nls];
    *ls = (lsock){ .fd = -1, .proto = SF_PROTO_TCP, .svc = svc, .w = w };
    ls->state = service_state(w, svc, &fresh);
    if (svc->state_new && ls->state == NULL) {
        close(fd);
        return sf_err_set(err, -ENOMEM, "%s: state", svc->name);
    }
    w->nls++;
    sf_set_nonblock(fd, 1);
    sf__tcp_start_conn(w, ls, fd);
    /* Run as a drain: serve the present connection, then return. */
    sf_server_stop(s, 1);
    return 0;
}

int
sf_server_listener_count(const sf_server *s)
{
    return s->nlisteners;
}

const sf_listener *
sf_server_listener(const sf_server *s, int i)
{
    return i >= 0 && i < s->nlisteners ? &s->listeners[i] : NULL;
}

