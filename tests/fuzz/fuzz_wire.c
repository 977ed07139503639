/* fuzz_wire: libFuzzer harness for the captured-packet parser: IP, TCP with options, UDP,
 * ICMP errors quoting a datagram; then relative numbers and both formats. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sf_wire_flows flows;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t frame[14 + 1024];
    char buf[1024];
    sf_segment s, f;
    size_t n;

    if (size > 1024)
        return 0;
    if (sf_wire_parse(data, size, 1, &s) < 0)
        return 0;
    /* The same packet behind an Ethernet header parses to the same record. */
    memset(frame, 0, 14);
    frame[12] = s.family == AF_INET ? 0x08 : 0x86;
    frame[13] = s.family == AF_INET ? 0x00 : 0xdd;
    memcpy(frame + 14, data, size);
    if (sf_wire_parse_frame(frame, size + 14, 1, &f) != 0 || memcmp(&s, &f, sizeof(s)) != 0)
        abort();
    if (s.kind == SF_WIRE_TCP && (s.wscale > 14 || s.len > 65535))
        abort();
    if (flows.n == SF_WIRE_FLOWS_MAX)
        memset(&flows, 0, sizeof(flows));
    sf_wire_relate(&flows, &s);
    n = sf_wire_format_json(&s, buf, sizeof(buf));
    if (n >= sizeof(buf) || n != strlen(buf) || buf[0] != '{' || buf[n - 1] != '}')
        abort();
    n = sf_wire_format_text(&s, 0, buf, sizeof(buf));
    if (n >= sizeof(buf) || n != strlen(buf))
        abort();
    sf_wire_explain(&s, 5000, 1, buf, sizeof(buf));
    return 0;
}
