/* fuzz_addr: libFuzzer harness for the address parsers (split, port, numeric resolve,
 * unix: forms, format back, access rules). No DNS: names are resolved numerically only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/access.h"
#include "sockflow/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[512], host[256], port[64], shown[SF_ADDR_STRLEN];
    sf_addr_list l;
    sf_err err;

    if (size >= sizeof(text))
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (sf_addr_split(text, host, sizeof(host), port, sizeof(port), &err) == 0) {
        if (strlen(host) >= sizeof(host) || strlen(port) >= sizeof(port))
            abort();
    }
    sf_addr_parse_port(text, &err);
    if (sf_addr_resolve_text(text, "7", SF_ADDR_NUMERIC, &l, &err) > 0) {
        for (int i = 0; i < l.n; i++)
            if (strlen(sf_addr_format(&l.a[i], shown, sizeof(shown))) >= sizeof(shown))
                abort();
    }
    /* a Unix address formats back to exactly the text it was parsed from */
    if (sf_addr_parse_unix(text, &l.a[0], &err) == 0 &&
        strcmp(sf_addr_format(&l.a[0], shown, sizeof(shown)), text) != 0)
        abort();
    {
        sf_access *a = sf_access_new(NULL);

        if (a && sf_access_add(a, size & 1, text, &err) == 0 && !sf_access_active(a))
            abort();
        sf_access_free(a);
    }
    return 0;
}
