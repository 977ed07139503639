/* fuzz_ports: libFuzzer harness for the port-list parser behind `connect -z` ("22",
 * "20-25", "1-65535", comma lists). Oracle: every port in range, each once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t seen[65536];
    char text[256];
    uint16_t *ports;
    sf_err err;
    int n;

    if (size >= sizeof(text))
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    n = sf_scan_parse_ports(text, &ports, &err);
    if (n < 0)
        return err.msg[0] == '\0' ? (abort(), 0) : 0;
    if (n == 0 || n > 65535)
        abort();
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < n; i++) {
        if (ports[i] == 0 || seen[ports[i]]++)
            abort();
    }
    free(ports);
    return 0;
}
