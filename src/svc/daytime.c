/* daytime (RFC 867): the local date and time as ctime() writes it, then close. */
#include <string.h>
#include <time.h>

#include "sockflow/svc.h"

int
sf_daytime_line(time_t t, char out[SF_DAYTIME_LINE])
{
    struct tm tm;
    char buf[64];

    /* "Mon Nov 23 21:58:18 2026\n": the 24 characters of ctime, as inetd sends them,
     * with CRLF for the network. */
    if (localtime_r(&t, &tm) == NULL || asctime_r(&tm, buf) == NULL || strlen(buf) != 25)
        return -1;
    memcpy(out, buf, 24);
    out[24] = '\r';
    out[25] = '\n';
    return SF_DAYTIME_LINE;
}

static void
daytime_open(sf_conn *c)
{
    char line[SF_DAYTIME_LINE];

    if (sf_daytime_line(time(NULL), line) < 0) {
        sf_conn_close(c, "the date does not fit the daytime format");
        return;
    }
    /* Finish rather than close: what the client sent is read and dropped, so unread
     * input never turns the close into a reset that cuts the reply off. */
    if (sf_conn_send(c, line, sizeof(line)) == 0)
        sf_conn_finish(c);
}

static void
daytime_datagram(sf_dgram *d)
{
    if (d->outcap < SF_DAYTIME_LINE || sf_daytime_line(time(NULL), d->out) < 0)
        return;
    d->reply = d->out;
    d->reply_len = SF_DAYTIME_LINE;
}

const sf_service sf_svc_daytime = {
    .name = "daytime",
    .port = 13,
    .protos = SF_PROTO_TCP | SF_PROTO_UDP,
    .on_open = daytime_open,
    .on_datagram = daytime_datagram,
    .ring_ok = 1,
};
