/* passed: `sockflow serve` under systemd socket activation — the passed sockets
 * (LISTEN_FDS) matched to the services named on the command line. */
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "passed.h"
#include "sockflow/activate.h"

/* The service of SERVICE[:PORT] spec, or NULL. */
static const sf_service *
spec_service(const char *spec)
{
    char name[64];
    size_t n = strcspn(spec, ":");

    if (n >= sizeof(name))
        return NULL;
    memcpy(name, spec, n);
    name[n] = '\0';
    return sf_service_find(name);
}

/* A passed socket named SERVICE or SERVICE.socket (FileDescriptorName=, or the unit's
 * name) goes to that service; unnamed ones to the services in the order given. */
static const sf_service *
match(const sf_passed *p, int i, char **specs, int nspecs)
{
    for (int k = 0; k < nspecs; k++) {
        const sf_service *svc = spec_service(specs[k]);
        size_t n = svc ? strlen(svc->name) : 0;

        if (svc && strncmp(p->name, svc->name, n) == 0 &&
            (p->name[n] == '\0' || strcmp(p->name + n, ".socket") == 0))
            return svc;
    }
    return i < nspecs ? spec_service(specs[i]) : NULL;
}

int
cmd_serve_passed(sf_server *s, char **specs, int nspecs, int *taken)
{
    sf_passed p[SF_PASSED_MAX];
    sf_err err;
    int n = sf_activation_take(p, SF_PASSED_MAX, &err), rc = 0;

    *taken = n > 0;
    if (n < 0)
        return cmd_fail("%s", err.msg);
    for (int i = 0; i < n; i++) {
        const sf_service *svc = rc == 0 ? match(&p[i], i, specs, nspecs) : NULL;

        if (rc != 0) {
            close(p[i].fd);
        } else if (svc == NULL) {
            close(p[i].fd);
            rc = cmd_fail("LISTEN_FDS: %d sockets for %d services: name each socket after "
                          "its service (FileDescriptorName=echo)", n, nspecs);
        } else if (sf_server_adopt(s, svc, p[i].fd, &err) < 0) {
            rc = cmd_fail("LISTEN_FDS: %s", err.msg);
        }
    }
    return rc;
}
