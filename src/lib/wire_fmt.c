/* wire_fmt: segment records as a text line, a JSON object, an --explain sentence and a
 * ladder event. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sockflow/wire.h"

const char *
sf_wire_flags_name(unsigned flags, char *buf, size_t cap)
{
    static const char *const names[] = { "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR" };
    size_t len = 0;

    if (cap == 0)
        return buf;
    buf[0] = '\0';
    for (int i = 0; i < 8; i++)
        if (flags & (1u << i))
            len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s",
                                    len ? "," : "", names[i]);
    if (len == 0)
        snprintf(buf, cap, "-");
    return buf;
}

/* The host alone (ICMP carries no ports). */
static const char *
host_text(const sf_addr *a, char *buf, size_t cap)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;

    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)cap);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)cap);
    return buf;
}

/* snprintf that appends at *len and keeps counting past cap. */
static void
add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + (*len < cap ? *len : cap), *len < cap ? cap - *len : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len += (size_t)n;
}

static void
text_tcp(const sf_segment *s, char *buf, size_t cap, size_t *len)
{
    char fl[40];

    add(buf, cap, len, "%s", sf_wire_flags_name(s->flags, fl, sizeof(fl)));
    if (s->has_rel_seq)
        add(buf, cap, len, " seq=%u (%u)", s->rel_seq, s->seq);
    else
        add(buf, cap, len, " seq=%u", s->seq);
    if (s->flags & SF_SEG_ACK) {
        if (s->has_rel_ack)
            add(buf, cap, len, " ack=%u (%u)", s->rel_ack, s->ack);
        else
            add(buf, cap, len, " ack=%u", s->ack);
    }
    add(buf, cap, len, " win=%u", s->win);
    if (s->has_win_bytes && s->win_bytes != s->win)
        add(buf, cap, len, " (%u bytes)", s->win_bytes);
    add(buf, cap, len, " len=%u", s->len);
    if (s->mss)
        add(buf, cap, len, " mss=%u", s->mss);
    if (s->wscale >= 0)
        add(buf, cap, len, " wscale=%d", s->wscale);
    if (s->sack_ok)
        add(buf, cap, len, " sack_ok");
    if (s->has_ts)
        add(buf, cap, len, " ts=%u/%u", s->ts_val, s->ts_ecr);
}

size_t
sf_wire_format_text(const sf_segment *s, uint64_t t0_ns, char *buf, size_t cap)
{
    char a[SF_ADDR_STRLEN], b[SF_ADDR_STRLEN], q1[SF_ADDR_STRLEN], q2[SF_ADDR_STRLEN];
    size_t len = 0;

    if (cap)
        buf[0] = '\0';
    add(buf, cap, &len, "%10.6f wire       ",
        s->t_ns >= t0_ns ? (double)(s->t_ns - t0_ns) / 1e9 : -(double)(t0_ns - s->t_ns) / 1e9);
    if (s->kind == SF_WIRE_ICMP_UNREACH) {
        add(buf, cap, &len, "%-4s %s > %s  port unreachable (type %u code %u), quoting udp %s > %s",
            s->family == AF_INET6 ? "icmp6" : "icmp", host_text(&s->src, a, sizeof(a)),
            host_text(&s->dst, b, sizeof(b)), s->icmp_type, s->icmp_code,
            sf_addr_format(&s->quoted_src, q1, sizeof(q1)),
            sf_addr_format(&s->quoted_dst, q2, sizeof(q2)));
        return len;
    }
    add(buf, cap, &len, "%-4s %s > %s  ", s->kind == SF_WIRE_TCP ? "tcp" : "udp",
        sf_addr_format(&s->src, a, sizeof(a)), sf_addr_format(&s->dst, b, sizeof(b)));
    if (s->kind == SF_WIRE_TCP)
        text_tcp(s, buf, cap, &len);
    else
        add(buf, cap, &len, "len=%u", s->len);
    return len;
}

static void
json_tcp(const sf_segment *s, char *buf, size_t cap, size_t *len)
{
    char fl[40];

    add(buf, cap, len, ",\"flags\":\"%s\",\"seq\":%u,\"ack\":%u",
        sf_wire_flags_name(s->flags, fl, sizeof(fl)), s->seq, s->ack);
    if (s->has_rel_seq)
        add(buf, cap, len, ",\"rel_seq\":%u", s->rel_seq);
    else
        add(buf, cap, len, ",\"rel_seq\":null");
    if (s->has_rel_ack)
        add(buf, cap, len, ",\"rel_ack\":%u", s->rel_ack);
    else
        add(buf, cap, len, ",\"rel_ack\":null");
    add(buf, cap, len, ",\"win\":%u", s->win);
    if (s->has_win_bytes)
        add(buf, cap, len, ",\"win_bytes\":%u", s->win_bytes);
    add(buf, cap, len, ",\"len\":%u", s->len);
    if (s->mss)
        add(buf, cap, len, ",\"mss\":%u", s->mss);
    if (s->wscale >= 0)
        add(buf, cap, len, ",\"wscale\":%d", s->wscale);
    if (s->sack_ok)
        add(buf, cap, len, ",\"sack_ok\":true");
    if (s->has_ts)
        add(buf, cap, len, ",\"ts_val\":%u,\"ts_ecr\":%u", s->ts_val, s->ts_ecr);
}

size_t
sf_wire_format_json(const sf_segment *s, char *buf, size_t cap)
{
    char a[SF_ADDR_STRLEN], b[SF_ADDR_STRLEN], q1[SF_ADDR_STRLEN], q2[SF_ADDR_STRLEN];
    int icmp = s->kind == SF_WIRE_ICMP_UNREACH;
    size_t len = 0;

    if (cap)
        buf[0] = '\0';
    add(buf, cap, &len, "{\"event\":\"segment\",\"t_ns\":%llu,\"proto\":\"%s\",\"family\":\"%s\","
        "\"src\":\"%s\",\"dst\":\"%s\"", (unsigned long long)s->t_ns,
        icmp ? (s->family == AF_INET6 ? "icmp6" : "icmp") :
        s->kind == SF_WIRE_TCP ? "tcp" : "udp", s->family == AF_INET6 ? "ipv6" : "ipv4",
        icmp ? host_text(&s->src, a, sizeof(a)) : sf_addr_format(&s->src, a, sizeof(a)),
        icmp ? host_text(&s->dst, b, sizeof(b)) : sf_addr_format(&s->dst, b, sizeof(b)));
    if (s->kind == SF_WIRE_TCP)
        json_tcp(s, buf, cap, &len);
    else if (s->kind == SF_WIRE_UDP)
        add(buf, cap, &len, ",\"len\":%u", s->len);
    else
        add(buf, cap, &len, ",\"type\":%u,\"code\":%u,\"what\":\"port unreachable\","
            "\"quoted_proto\":\"udp\",\"quoted_src\":\"%s\",\"quoted_dst\":\"%s\"",
            s->icmp_type, s->icmp_code, sf_addr_format(&s->quoted_src, q1, sizeof(q1)),
            sf_addr_format(&s->quoted_dst, q2, sizeof(q2)));
    add(buf, cap, &len, "}");
    return len;
}

void
sf_wire_to_ladder(const sf_segment *s, int server_port, sf_ladder_event *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = SF_LADDER_SEG;
    out->t_ns = out->t_end_ns = s->t_ns;
    out->len = s->len;
    if (s->kind == SF_WIRE_ICMP_UNREACH) {
        out->proto = SF_LADDER_ICMP;
        out->side = SF_LADDER_SERVER;
        out->len = 0;
        return;
    }
    out->side = sf_addr_port(&s->src) == server_port ? SF_LADDER_SERVER : SF_LADDER_CLIENT;
    out->proto = s->kind == SF_WIRE_TCP ? SF_LADDER_TCP : SF_LADDER_UDP;
    out->flags = s->flags;
    out->seq = s->rel_seq;
    out->ack = s->rel_ack;
    out->has_seq = s->has_rel_seq;
    out->has_ack = s->has_rel_ack;
}

/* What a TCP segment does in the exchange, in the seed's terms. */
static const char *
tcp_role(const sf_segment *s, int from_server)
{
    unsigned f = s->flags;

    if ((f & SF_SEG_SYN) && !(f & SF_SEG_ACK))
        return "sends SYN with its initial sequence number: connect() is dialling";
    if ((f & SF_SEG_SYN) && (f & SF_SEG_ACK))
        return "answers: SYN with its own number, and an ACK of the client's SYN; "
               "no accept() is needed for this, the listening socket's kernel does it";
    if (f & SF_SEG_RST)
        return "resets the connection (RST)";
    if (f & SF_SEG_FIN)
        return "sends FIN: this side hung up its direction (close() or shutdown())";
    if (s->len > 0)
        return from_server ? "sends data: the server's write() handed it to the kernel"
                           : "sends data: the client's write() handed it to the kernel";
    if (!from_server && s->has_rel_seq && s->rel_seq == 1 && s->has_rel_ack && s->rel_ack == 1)
        return "acknowledges the server's SYN: the handshake is complete and the "
               "connection waits in the accept queue until accept() takes it";
    return "acknowledges what it has received";
}

const char *
sf_wire_explain(const sf_segment *s, int server_port, int nth, char *buf, size_t cap)
{
    sf_ladder_event e;
    char label[96];
    int from_server;

    sf_wire_to_ladder(s, server_port, &e);
    from_server = e.side == SF_LADDER_SERVER;
    sf_ladder_seg_label(&e, label, sizeof(label));
    if (s->kind == SF_WIRE_TCP)
        snprintf(buf, cap, "segment %d: the %s's kernel %s (%s).", nth,
                 from_server ? "server" : "client", tcp_role(s, from_server), label);
    else if (s->kind == SF_WIRE_UDP)
        snprintf(buf, cap, "segment %d: a datagram of %u bytes from the %s: a letter posted "
                 "with its return address, no connection and no handshake.", nth, s->len,
                 from_server ? "server" : "client");
    else
        snprintf(buf, cap, "segment %d: no socket is bound to port %d: the kernel answers "
                 "the datagram with ICMP port unreachable, which a connected UDP socket "
                 "reports as ECONNREFUSED on its next call.", nth,
                 sf_addr_port(&s->quoted_dst));
    return buf;
}
