/* bench_modes: the table of the generator's modes, their names, defaults and checks. */
#include <stdio.h>
#include <string.h>

#include "bench_int.h"

#define DEFAULT_SECS 10
#define DEFAULT_SECS_COUNTED 60     /* with a request count: the count ends it, normally */

/* The modes, one file each, in the order of enum sf_bench_mode. A new mode is a file,
 * its declaration here and a line in the table. */
extern const sf__bench_mode sf__bench_echo;
extern const sf__bench_mode sf__bench_connect;
extern const sf__bench_mode sf__bench_stream;
extern const sf__bench_mode sf__bench_udp;

static const sf__bench_mode *const modes[] = {
    &sf__bench_echo,
    &sf__bench_connect,
    &sf__bench_stream,
    &sf__bench_udp,
};

#define NMODES ((int)(sizeof(modes) / sizeof(modes[0])))

const sf_bench_mode_info *
sf_bench_mode_get(int mode)
{
    return mode >= 0 && mode < NMODES ? &modes[mode]->info : NULL;
}

int
sf_bench_mode_count(void)
{
    return NMODES;
}

int
sf_bench_mode_find(const char *name)
{
    for (int i = 0; i < NMODES; i++)
        if (strcmp(name, modes[i]->info.name) == 0)
            return i;
    return SF_EUSAGE;
}

int
sf_bench_defaults(sf_bench_opts *o)
{
    const sf_bench_mode_info *mi = sf_bench_mode_get(o->mode);

    if (mi == NULL)
        return SF_EUSAGE;
    if (o->conns <= 0)
        o->conns = mi->conns;
    if (o->size == 0)
        o->size = mi->size;
    if (o->pipeline <= 0)
        o->pipeline = 1;
    if (o->timeout_ms == 0)
        o->timeout_ms = mi->timeout_ms;
    if (o->duration_ms == 0)
        o->duration_ms = (o->requests ? DEFAULT_SECS_COUNTED : DEFAULT_SECS) * 1000u;
    return 0;
}

int
sf_bench_describe(const sf_bench_opts *opts, char *buf, size_t len)
{
    sf_bench_opts o = *opts;

    if (sf_bench_defaults(&o) < 0)
        return SF_EUSAGE;
    return modes[o.mode]->describe(&o, buf, len);
}

/* The options a mode cannot take, with the reason; o has its defaults. */
static int
check_opts(const sf_bench_opts *o, sf_err *err)
{
    const sf_bench_mode_info *mi = &modes[o->mode]->info;

    if (o->size < mi->min_size || o->size > mi->max_size)
        return sf_err_set(err, SF_EUSAGE, "size %zu: %s takes %zu to %zu bytes%s%s%s",
                          o->size, mi->name, mi->min_size, mi->max_size,
                          mi->size_why ? " (" : "", mi->size_why ? mi->size_why : "",
                          mi->size_why ? ")" : "");
    if (o->pipeline > 1 && !mi->pipelines)
        return sf_err_set(err, SF_EUSAGE, "pipeline %d: %s has one request in flight per "
                          "connection (echo pipelines)", o->pipeline, mi->name);
    if (o->recv && !mi->can_recv)
        return sf_err_set(err, SF_EUSAGE, "recv: %s cannot only read (stream can)", mi->name);
    return 0;
}

int
sf_bench_check(const sf_bench_opts *opts, sf_err *err)
{
    sf_bench_opts o = *opts;

    if (sf_bench_defaults(&o) < 0)
        return sf_err_set(err, SF_EUSAGE, "mode %d: no such mode", opts->mode);
    return check_opts(&o, err);
}

const sf__bench_mode *
sf__bench_mode_of(int mode)
{
    return mode >= 0 && mode < NMODES ? modes[mode] : NULL;
}
