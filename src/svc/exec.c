/* exec: a program for each client, the socket as its standard input and output, as
 * inetd's nowait services and ncat -e run them. The connection stays open and counted
 * (--max-conns, --max-conns-per-source, drain) while its program runs; once the program
 * is reaped it is closed, with how the program ended in the log. A program still
 * running when its connection is closed (drain time up, stop) gets SIGHUP. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/spawn.h"
#include "sockflow/svc.h"

#define EXEC_PREFIX "exec:"

typedef struct exec_service {
    sf_service svc;             /* first: sf_conn_service() points here */
    sf_spawn_cmd cmd;
} exec_service;

typedef struct kid {
    pid_t pid;
    sf_conn *c;
} kid;

typedef struct exec_state {
    kid *k;
    int n, cap;
} exec_state;

static void *
exec_state_new(void)
{
    return calloc(1, sizeof(exec_state));
}

static void
exec_state_free(void *state)
{
    exec_state *st = state;

    free(st->k);
    free(st);
}

static void
forget(exec_state *st, pid_t pid)
{
    for (int i = 0; i < st->n; i++) {
        if (st->k[i].pid == pid) {
            st->k[i] = st->k[--st->n];
            return;
        }
    }
}

static void
exec_open(sf_conn *c)
{
    const exec_service *e = (const exec_service *)sf_conn_service(c);
    exec_state *st = sf_conn_state(c);
    pid_t *mine = sf_conn_data(c);
    sf_err err;
    pid_t pid;

    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 16;
        kid *k = realloc(st->k, (size_t)cap * sizeof(*k));

        if (k == NULL) {
            sf_conn_close(c, "out of memory");
            return;
        }
        st->k = k;
        st->cap = cap;
    }
    pid = sf_spawn(&e->cmd, sf_conn_fd(c), &err);
    if (pid < 0) {
        sf_conn_close(c, err.msg);
        return;
    }
    *mine = pid;
    st->k[st->n++] = (kid){ pid, c };
    /* The program reads the socket now: the server must not. */
    sf_conn_hold(c);
}

static void
exec_close(sf_conn *c)
{
    pid_t *mine = sf_conn_data(c);

    if (*mine > 0) {
        sf_spawn_signal(*mine, SIGHUP);
        forget(sf_conn_state(c), *mine);
        *mine = 0;
    }
}

static void
exec_child(void *state)
{
    exec_state *st = state;
    char how[96], what[64];
    int status;
    pid_t pid;

    while ((pid = sf_spawn_reap(&status)) > 0) {
        for (int i = 0; i < st->n; i++) {
            sf_conn *c = st->k[i].c;

            if (st->k[i].pid != pid)
                continue;
            *(pid_t *)sf_conn_data(c) = 0;
            st->k[i] = st->k[--st->n];
            snprintf(how, sizeof(how), "program %d %s", (int)pid,
                     sf_spawn_status_text(status, what, sizeof(what)));
            sf_conn_close(c, how);
            break;
        }
    }
}

int
sf_svc_exec_is(const char *spec)
{
    return strncmp(spec, EXEC_PREFIX, strlen(EXEC_PREFIX)) == 0;
}

sf_service *
sf_svc_exec_new(const char *spec, int *port, sf_err *err)
{
    const char *p = spec + strlen(EXEC_PREFIX);
    const char *eq = strchr(p, '=');
    char portstr[16];
    exec_service *e;

    if (!sf_svc_exec_is(spec) || eq == NULL || eq == p || (size_t)(eq - p) >= sizeof(portstr)) {
        sf_err_set(err, SF_EUSAGE, "%s: expected exec:PORT=PROGRAM [ARGS]", spec);
        return NULL;
    }
    memcpy(portstr, p, (size_t)(eq - p));
    portstr[eq - p] = '\0';
    if ((*port = sf_addr_parse_port(portstr, err)) < 0)
        return NULL;
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        sf_err_set(err, -ENOMEM, "%s", spec);
        return NULL;
    }
    if (sf_spawn_cmd_split(&e->cmd, eq + 1, err) < 0) {
        sf_err_set(err, SF_EUSAGE, "%s: name the program after '='", spec);
        free(e);
        return NULL;
    }
    e->svc = (sf_service){
        .name = "exec", .protos = SF_PROTO_TCP,
        /* one loop: the one that hears SIGCHLD, so reaping needs no locks */
        .one_loop = 1, .conn_size = sizeof(pid_t),
        .state_new = exec_state_new, .state_free = exec_state_free,
        .on_open = exec_open, .on_close = exec_close, .on_child = exec_child,
    };
    return &e->svc;
}

void
sf_svc_exec_free(sf_service *svc)
{
    exec_service *e = (exec_service *)svc;

    if (e == NULL)
        return;
    sf_spawn_cmd_free(&e->cmd);
    free(e);
}
