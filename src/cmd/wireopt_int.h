/* wireopt_int: what the capture keeps for the figures, shared by wireopt.c (capture and
 * lines) and wireopt_fig.c (the ladder and the files). */
#ifndef SOCKFLOW_WIREOPT_INT_H
#define SOCKFLOW_WIREOPT_INT_H

#include <pthread.h>
#include <sys/types.h>

#include "wireopt.h"

#define KEEP_MAX 4096           /* calls and segments kept for a figure */
#define CONVS_MAX 64
#define COUNTS_MAX 16
#define FIGS_MAX 3

/* A call kept for the ladder: its strings live here. */
typedef struct kept_call {
    sf_call call;
    int server, fd, open, err, udp;
    unsigned long id;
    long result;
    uint64_t t_ns, t_end_ns;
    char side[16], args[64];
} kept_call;

typedef struct kept_seg {
    sf_segment s;
    int sport;                  /* the server's port in it, 0 when neither end is known */
} kept_seg;

typedef struct kept {
    kept_call *calls;
    kept_seg *segs;
    size_t ncalls, nsegs;
} kept;

typedef struct figure {
    int section;
    char title[96];
    kept k;
} figure;

struct cmd_wire {
    const char *cmd;
    unsigned what;
    sf_trace_sink *sink;
    sf_tracer tap;
    const sf_tracer *inner;
    pthread_mutex_t lock;
    sf_wire *w;
    pid_t pid;                  /* the process capturing: a forked child must not */
    sf_wire_filter filter;
    struct { sf_addr a, b; int n; } convs[CONVS_MAX];   /* segments per connection */
    int nconvs;
    struct { int fd; sf_wire_counts c; } counts[COUNTS_MAX];
    kept k;
    figure figs[FIGS_MAX];
    int nfigs;
};

#endif
