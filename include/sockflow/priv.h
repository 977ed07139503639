/* priv: giving up root after the privileged work (binding a port below 1024) is done. */
#ifndef SOCKFLOW_PRIV_H
#define SOCKFLOW_PRIV_H

#include "err.h"

/* Become user: supplementary groups set to the user's primary group alone, then
 * setgid, then setuid — in that order, as each needs the privilege the next gives up.
 * Then checks that it held: real and effective uid and gid are the user's, the only
 * group is the user's, and (if user is not root) setuid(0) fails. Returns 0, or a
 * negative code with err set ("--user nosuch: no such user", "setuid 65534: ..."). */
int sf_drop_privileges(const char *user, sf_err *err);

#endif
