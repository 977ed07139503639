/* trace-cost-calls: nanoseconds per sf_write + sf_read pair on a socketpair, tracing off
 * (NULL trace). Linked once against the normal library and once against a -DSF_NO_TRACE
 * build by bench/trace-cost; the difference is the cost of the trace branch. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "sockflow/sockflow.h"

int
main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char buf[64] = { 0 };
    int sv[2];
    uint64_t t0;

    if (n < 1 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("trace-cost-calls");
        return 1;
    }
    t0 = sf_now_ns();
    for (long i = 0; i < n; i++) {
        if (sf_write(NULL, sv[0], buf, sizeof(buf)) != sizeof(buf) ||
            sf_read(NULL, sv[1], buf, sizeof(buf)) != sizeof(buf)) {
            fputs("trace-cost-calls: short transfer\n", stderr);
            return 1;
        }
    }
    printf("%.1f\n", (double)(sf_now_ns() - t0) / (double)n);
    return 0;
}
