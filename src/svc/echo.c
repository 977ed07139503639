/* echo (RFC 862): everything a client sends comes back, byte for byte. */
#include "sockflow/svc.h"

static void
echo_data(sf_conn *c, char *data, size_t len)
{
    /* The reply is written straight from the read buffer; what the socket does not
     * take is queued, and reading from this client pauses until the queue drains. */
    if (sf_conn_send(c, data, len) < 0)
        sf_conn_close(c, "output queue full");
}

/* UDP: the datagram back, whole (a truncated one never reaches here). */
static void
echo_datagram(sf_dgram *d)
{
    d->reply = d->in;
    d->reply_len = d->inlen;
}

const sf_service sf_svc_echo = {
    .name = "echo",
    .port = 7,
    .protos = SF_PROTO_TCP | SF_PROTO_UDP,
    .on_data = echo_data,
    .on_datagram = echo_datagram,
    .ring_ok = 1,
};
