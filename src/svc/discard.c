/* discard (RFC 863): everything a client sends is read and dropped; nothing comes back. */
#include "sockflow/svc.h"

/* TCP needs no callback: with no on_data the engine reads and drops, and with no
 * on_eof the client's half-close is answered by sf_conn_finish(): the socket is read
 * empty, so close() sends FIN, never RST. UDP: no reply. */
const sf_service sf_svc_discard = {
    .name = "discard",
    .port = 9,
    .protos = SF_PROTO_TCP | SF_PROTO_UDP,
    .ring_ok = 1,
};
