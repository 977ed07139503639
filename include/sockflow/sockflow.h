/* sockflow: the TCP and UDP client-server flows of the Berkeley sockets API, as a
 * small library. Include this one header for all of it. */
#ifndef SOCKFLOW_H
#define SOCKFLOW_H

#define SOCKFLOW_VERSION "0.1.0"

#include "err.h"
#include "addr.h"
#include "trace.h"
#include "sock.h"
#include "loop.h"
#include "buf.h"
#include "server.h"
#include "svc.h"
#include "client.h"
#include "scan.h"
#include "hist.h"
#include "bench.h"
#include "ladder.h"
#include "wire.h"

/* The version of the library the program runs with, "0.1.0"; SOCKFLOW_VERSION is the
 * one it was compiled against. */
const char *sf_version(void);

#endif
