/* trace_explain: the telephone picture of each call, one sentence per event, from a
 * table with one entry per call; the event's values (call, address, option, flags),
 * never its formatted text, choose the sentence. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "sockflow/err.h"
#include "trace_int.h"

static int
udp(const sf_trace_event *ev)
{
    return ev->proto && strcmp(ev->proto, "udp") == 0;
}

static int
tcp(const sf_trace_event *ev)
{
    return ev->proto && strcmp(ev->proto, "tcp") == 0;
}

static const char *
st(const sf_trace_event *ev)
{
    return sf_tcp_state_name(ev->tcp_state);
}

/* The address the call concerns, else the peer's: a sendto() on a connected socket. */
static const char *
addr_or_peer(const sf_trace_event *ev, char *buf, size_t len)
{
    if (ev->addr)
        return sf_addr_format(ev->addr, buf, len);
    return ev->peer ? ev->peer : "-";
}

/* ---- errors every call shares ---- */

static void
explain_error(sf__cursor *o, const sf_trace_event *ev)
{
    /* connect-done is the end of a connect(): poll, then SO_ERROR */
    const char *call = ev->call == SF_CALL_CONNECT_DONE ? "connect" : sf_call_name(ev->call);

    switch (ev->err) {
    case EAGAIN:
        sf__put(o, "%s(): not ready, nothing to do yet (EAGAIN): the socket is nonblocking,"
                " so the call returns at once instead of sleeping.", call);
        return;
    case ECONNREFUSED:
        sf__put(o, "%s(): nobody answers at that number (ECONNREFUSED): no phone is switched"
                " on there, and the kernel at the other end said so with a reset.", call);
        return;
    case ETIMEDOUT:
        sf__put(o, "%s(): the call was never answered (ETIMEDOUT).", call);
        return;
    case ECONNRESET:
        sf__put(o, "%s(): the other side slammed the phone down (ECONNRESET: a reset, not a"
                " goodbye).", call);
        return;
    case EPIPE:
        sf__put(o, "%s(): the other side has hung up; talking into a dead line fails"
                " (EPIPE).", call);
        return;
    case EADDRINUSE:
        sf__put(o, "%s(): that number is taken (EADDRINUSE): another phone already has it.",
                call);
        return;
    case EACCES:
        sf__put(o, "%s(): not allowed (EACCES): numbers below 1024 need privilege.", call);
        return;
    default:
        sf__put(o, "%s() failed: %s (%s).", call, strerror(ev->err), sf_errname(-ev->err));
    }
}

/* ---- one function per call ---- */

static void
explain_socket(sf__cursor *o, const sf_trace_event *ev)
{
    if (udp(ev))
        sf__put(o, "socket(): you have a mailbox for letters (UDP, descriptor %ld): no call is"
                " ever set up, each datagram travels alone with a return address.",
                ev->result);
    else
        sf__put(o, "socket(): you have a phone (descriptor %ld). It has no number yet and"
                " cannot ring (%s).", ev->result, st(ev));
}

/* What an option means in the picture; options not listed get none. */
static const struct {
    int level, name;
    const char *why;
} options[] = {
    { SOL_SOCKET, SO_REUSEADDR, ": a restarted server may take its number back at once,"
      " while calls of the last run still linger in TIME_WAIT." },
    { SOL_SOCKET, SO_REUSEPORT, ": several phones may share one number, and the kernel"
      " spreads the callers among them." },
    { IPPROTO_IPV6, IPV6_V6ONLY, ": this number answers IPv6 callers only; IPv4 gets a"
      " phone of its own." },
};

static void
explain_setsockopt(sf__cursor *o, const sf_trace_event *ev)
{
    const char *why = ".";

    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (options[i].level == ev->opt_level && options[i].name == ev->opt_name)
            why = options[i].why;
    sf__put(o, "setsockopt(%s): a setting on the %s before it gets its %s%s", ev->args,
            udp(ev) ? "mailbox" : "phone", udp(ev) ? "address" : "number", why);
}

static void
explain_bind(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];
    const char *where = ev->local ? ev->local
                      : ev->addr ? sf_addr_format(ev->addr, a, sizeof(a)) : ev->args;

    if (udp(ev))
        sf__put(o, "bind(): the mailbox gets its address, %s: letters sent there land here.",
                where);
    else
        sf__put(o, "bind(): the phone gets its number, %s, like a SIM card put in. It is"
                " still switched off (%s).", where, st(ev));
}

static void
explain_listen(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, "listen(): the phone is switched on and can ring (%s). From now on the kernel"
            " answers callers by itself (the three-way handshake) and keeps the finished"
            " calls waiting for accept() (%s).", st(ev), ev->args);
}

static void
explain_connect(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];
    const char *to = addr_or_peer(ev, a, sizeof(a));

    if (udp(ev)) {
        sf__put(o, "connect() on UDP: no call is set up and nothing is sent; it only writes"
                " %s on every envelope, so send() needs no address and only letters from"
                " there are taken (our own return address is %s).", to,
                ev->local ? ev->local : "-");
        return;
    }
    if (ev->notes & SF_TRACE_N_BOUND)
        sf__put(o, "connect(): someone dials %s from the number the caller chose itself with"
                " bind(), %s, and the kernel sent a SYN. ", to, ev->local ? ev->local : "-");
    else
        sf__put(o, "connect(): someone dials %s. The kernel picked the caller's own number,"
                " %s (a free local port), and sent a SYN. ", to, ev->local ? ev->local : "-");
    if (ev->tcp_state == SF_TCP_SYN_SENT)
        sf__put(o, "The line rings: SYN_SENT, waiting for the SYN-ACK.");
    else if (ev->tcp_state == SF_TCP_ESTABLISHED)
        sf__put(o, "On loopback the SYN-ACK came back before connect() returned: the"
                " handshake is already complete (ESTABLISHED).");
    else if (ev->tcp_state == SF_TCP_CLOSE)
        sf__put(o, "The answer came back before connect() returned, and it is no (CLOSE):"
                " see the next line.");
    else
        sf__put(o, "State: %s.", st(ev));
}

/* A nonblocking connect() that is under way is no failure. */
static int
connect_failed(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->err != EINPROGRESS)
        return 0;
    explain_connect(o, ev);
    return 1;
}

static void
explain_connect_done(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, "The three-way handshake is complete (SYN, SYN-ACK, ACK): the line is open"
            " (%s), round trip %u us.", st(ev), ev->rtt_us);
}

static void
explain_accept(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, "accept(): the phone rang and you answered: a private line on a new"
            " descriptor %ld (%s), ", ev->result, st(ev));
    if (ev->notes & SF_TRACE_N_NO_ADDR)
        sf__put(o, "to a caller you did not ask about (the address argument was NULL; "
                "getpeername() would tell: %s). ", ev->peer ? ev->peer : "-");
    else
        sf__put(o, "to the caller at %s. ", ev->peer ? ev->peer : "-");
    sf__put(o, "The first phone, descriptor %d, stays switched on for the next caller", ev->fd);
    if (ev->accept_queue > 0)
        sf__put(o, " (%d more waiting).", ev->accept_queue);
    else
        sf__put(o, ".");
}

static int
accept_failed(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->err == EINVAL)
        sf__put(o, "accept(): only a phone that is switched on (listen()) can be answered;"
                " this one is %s, so accept() fails with EINVAL.", st(ev));
    else if (ev->err == EAGAIN)
        sf__put(o, "accept(): nobody is calling: no finished call waits in the queue and"
                " this phone does not wait (nonblocking), so accept() returns EAGAIN at"
                " once.");
    else
        return 0;
    return 1;
}

/* read() and write() on a connected UDP socket: a letter, not a call. */
static void
explain_udp_io(sf__cursor *o, const sf_trace_event *ev)
{
    int in = ev->call == SF_CALL_READ;

    sf__put(o, "%s(): a letter of %ld bytes %s %s, the address connect() fixed; no call is"
            " set up.", sf_call_name(ev->call), ev->result, in ? "arrives from" : "is posted to",
            ev->peer ? ev->peer : "-");
}

static void
explain_read(sf__cursor *o, const sf_trace_event *ev)
{
    if (udp(ev))
        explain_udp_io(o, ev);
    else if (ev->result > 0)
        sf__put(o, "read(): you listen: %ld bytes from the other side.", ev->result);
    else if (ev->tcp_state == SF_TCP_CLOSE_WAIT)
        sf__put(o, "read() returned 0: the other side hung up (its FIN arrived). This side is"
                " now CLOSE_WAIT: it may still talk, and should hang up too.");
    else
        sf__put(o, "read() returned 0: end of the call, the other side has hung up (%s).",
                st(ev));
}

static int
read_failed(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->err != EAGAIN)
        return 0;
    sf__put(o, "read(): silence on the line: nothing to read yet (EAGAIN).");
    return 1;
}

static void
explain_write(sf__cursor *o, const sf_trace_event *ev)
{
    if (udp(ev))
        explain_udp_io(o, ev);
    else
        sf__put(o, "write(): you talk: %ld bytes go into the line.", ev->result);
}

static int
write_failed(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->err != EAGAIN)
        return 0;
    sf__put(o, "write(): the line is full: the other side does not read fast enough"
            " (EAGAIN).");
    return 1;
}

static void
explain_received(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];

    sf__put(o, "%s(): a letter arrives, %ld bytes, with its return address %s; no call was"
            " set up.", sf_call_name(ev->call), ev->result, addr_or_peer(ev, a, sizeof(a)));
}

static void
explain_sent(sf__cursor *o, const sf_trace_event *ev)
{
    char a[SF_ADDR_STRLEN];

    sf__put(o, "%s(): a letter of %ld bytes is posted to %s: no dialling, no answer to wait"
            " for; it just goes.", sf_call_name(ev->call), ev->result,
            addr_or_peer(ev, a, sizeof(a)));
}

static void
explain_shutdown(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, "shutdown(SHUT_WR): you say goodbye but keep listening: a FIN goes out (%s)."
            " The other side will read() 0 and may still talk.", st(ev));
}

static void
explain_close(sf__cursor *o, const sf_trace_event *ev)
{
    if (!tcp(ev)) {
        sf__put(o, "close(): %s is put away.", ev->proto ? "the mailbox" : "the descriptor");
        return;
    }
    switch (ev->tcp_state_before) {
    case SF_TCP_LISTEN:
        sf__put(o, "close(): the phone is switched off: nobody can call this number any"
                " more; lines already answered stay open.");
        return;
    case SF_TCP_ESTABLISHED:
        sf__put(o, "close(): you hang up first: a FIN goes out and the connection is now %s."
                " The other side will read() 0 and sit in CLOSE_WAIT until it hangs up too;"
                " this side ends in TIME_WAIT.", st(ev));
        return;
    case SF_TCP_CLOSE_WAIT:
        sf__put(o, "close(): the other side had hung up already; now you hang up too: the"
                " last FIN goes out (%s).", st(ev));
        return;
    case SF_TCP_FIN_WAIT1: case SF_TCP_FIN_WAIT2:
        sf__put(o, "close(): the goodbye was said already (shutdown); the descriptor goes"
                " away and the kernel finishes the call (%s).", st(ev));
        return;
    default:
        if (ev->tcp_state == SF_TCP_TIME_WAIT)
            sf__put(o, "close(): both sides have hung up; the descriptor goes away, and the"
                    " kernel keeps the connection in TIME_WAIT for a while so that late"
                    " packets of this call cannot reach a new one.");
        else
            sf__put(o, "close(): the phone is put away (it was %s).",
                    sf_tcp_state_name(ev->tcp_state_before));
    }
}

static void
explain_getsockopt(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, "getsockopt(TCP_INFO): ask the kernel how the line is: %s", st(ev));
    if (ev->accept_queue >= 0)
        sf__put(o, ", with %d finished call%s waiting for accept().", ev->accept_queue,
                ev->accept_queue == 1 ? "" : "s");
    else if (ev->tcp_state == SF_TCP_SYN_SENT)
        sf__put(o, ": the SYN went out and no SYN-ACK came back yet; the line still rings.");
    else
        sf__put(o, ".");
}

static void
explain_sock_diag(sf__cursor *o, const sf_trace_event *ev)
{
    sf__put(o, "Ask the kernel about a connection whose descriptor may be gone (%s): %s.",
            ev->args, st(ev));
    if (ev->tcp_state == SF_TCP_TIME_WAIT)
        sf__put(o, " TIME_WAIT: the side that hung up first waits (60 s on Linux) so that"
                " late packets of this call die out.");
    else if (ev->tcp_state == SF_TCP_FIN_WAIT2)
        sf__put(o, " FIN_WAIT2: our goodbye was acknowledged; waiting for the other side"
                " to hang up.");
}

/* ---- the table: one entry per call ---- */

typedef struct explainer {
    void (*done)(sf__cursor *o, const sf_trace_event *ev);     /* the call's sentence */
    int (*failed)(sf__cursor *o, const sf_trace_event *ev);    /* its own errors, or 0 */
} explainer;

static const explainer explainers[SF_CALL_COUNT] = {
    [SF_CALL_SOCKET]       = { explain_socket, NULL },
    [SF_CALL_SETSOCKOPT]   = { explain_setsockopt, NULL },
    [SF_CALL_BIND]         = { explain_bind, NULL },
    [SF_CALL_LISTEN]       = { explain_listen, NULL },
    [SF_CALL_ACCEPT4]      = { explain_accept, accept_failed },
    [SF_CALL_CONNECT]      = { explain_connect, connect_failed },
    [SF_CALL_CONNECT_DONE] = { explain_connect_done, NULL },
    [SF_CALL_READ]         = { explain_read, read_failed },
    [SF_CALL_WRITE]        = { explain_write, write_failed },
    [SF_CALL_RECVFROM]     = { explain_received, NULL },
    [SF_CALL_SENDTO]       = { explain_sent, NULL },
    [SF_CALL_RECVMMSG]     = { explain_received, NULL },
    [SF_CALL_SENDMMSG]     = { explain_sent, NULL },
    [SF_CALL_SHUTDOWN]     = { explain_shutdown, NULL },
    [SF_CALL_CLOSE]        = { explain_close, NULL },
    [SF_CALL_GETSOCKOPT]   = { explain_getsockopt, NULL },
    [SF_CALL_SOCK_DIAG]    = { explain_sock_diag, NULL },
};

void
sf__explain(sf__cursor *o, const sf_trace_event *ev)
{
    const explainer *x = (int)ev->call > 0 && ev->call < SF_CALL_COUNT
                       ? &explainers[ev->call] : NULL;

    if (ev->result < 0 && ev->err) {
        if (x == NULL || x->failed == NULL || !x->failed(o, ev))
            explain_error(o, ev);
    } else if (x && x->done) {
        x->done(o, ev);
    } else {
        sf__put(o, "%s(): %s.", sf_call_name(ev->call), st(ev));
    }
}

int
sf__explained(sf_call call)
{
    return (int)call > 0 && call < SF_CALL_COUNT && explainers[call].done != NULL;
}

const char *
sf_trace_explain(const sf_trace_event *ev, char *buf, size_t cap)
{
    sf__cursor o = { buf, cap, 0 };

    if (cap)
        buf[0] = '\0';
    sf__explain(&o, ev);
    return buf;
}
