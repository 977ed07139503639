/* time (RFC 868): the seconds since 1900-01-01 00:00 UTC as 32 bits, big-endian, then
 * close. */
#include <time.h>

#include "sockflow/svc.h"

#define SECONDS_1900_TO_1970 2208988800u

void
sf_time_value(time_t t, unsigned char out[4])
{
    /* 32 bits wrap in 2036, as RFC 868's clients expect. */
    uint32_t v = (uint32_t)((uint64_t)t + SECONDS_1900_TO_1970);

    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}

static void
time_open(sf_conn *c)
{
    unsigned char v[4];

    sf_time_value(time(NULL), v);
    if (sf_conn_send(c, v, sizeof(v)) == 0)
        sf_conn_finish(c);
}

static void
time_datagram(sf_dgram *d)
{
    if (d->outcap < 4)
        return;
    sf_time_value(time(NULL), (unsigned char *)d->out);
    d->reply = d->out;
    d->reply_len = 4;
}

const sf_service sf_svc_time = {
    .name = "time",
    .port = 37,
    .protos = SF_PROTO_TCP | SF_PROTO_UDP,
    .on_open = time_open,
    .on_datagram = time_datagram,
    .ring_ok = 1,
};
