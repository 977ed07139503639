/* server_accept: the TCP engine's accept side. accept4 in bounded batches; the transient
 * errors of accept(2) skipped with the listener kept armed; at EMFILE the spare
 * descriptor given up so waiting clients hear a clean close, never a spinning loop. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockflow/sock.h"
#include "server_int.h"

#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100
#define EMFILE_LOG_MS 10000

static void
resume_accepting(sf_loop *l, void *ud)
{
    lsock *ls = ud;

    if (ls->fd >= 0)    /* not closed meanwhile (drain) */
        sf_loop_set_events(l, ls->fd, SF_READ);
}

/* The loops share one table of descriptors: while one gives back its spare to shed
 * clients, another loop's accept4 would take the freed slot (and serve that client),
 * and the spare could not be taken again. Seen with -j 2 at the limit: both spares
 * gone within a second, then clients neither served nor turned away. So with several
 * loops accept4 and the shedding take turns; one loop needs no lock. */
static void
lock_accept(sf_server *s)
{
    if (s->nw > 1)
        pthread_mutex_lock(&s->accept_lock);
}

static void
unlock_accept(sf_server *s)
{
    int e = errno;

    if (s->nw > 1)
        pthread_mutex_unlock(&s->accept_lock);
    errno = e;
}

/* Out of descriptors: give back the spare one, accept and close at once so the client
 * hears a clean close instead of waiting, then take the spare again. Without this a
 * level-triggered listener would wake the loop endlessly. Called with the accept lock. */
static void
shed_connections(worker *w, lsock *ls)
{
    int shed = 0;

    if (w->spare_fd < 0)
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (w->spare_fd >= 0) {
        close(w->spare_fd);
        for (; shed < 64; shed++) {
            int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

            if (fd < 0)
                break;
            close(fd);
        }
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    w->st.emfile += (uint64_t)shed;
    if (shed == 0) {
        /* The spare made no room: it is gone (another loop took the slot) or the limit
         * is below the descriptors already open. Stop accepting for a moment rather
         * than wake on this listener again and again. */
        sf_loop_set_events(w->loop, ls->fd, 0);
        sf_loop_timer(w->loop, ACCEPT_PAUSE_MS, resume_accepting, ls);
    }
}

/* Out of descriptors: said once, then at most every EMFILE_LOG_MS while it lasts:
 * never a flood. */
void
sf__accept_out_of_descriptors(worker *w, int code)
{
    uint64_t now = sf_loop_now_ms(w->loop);

    if (w->emfile_log_ms == 0 || now - w->emfile_log_ms >= EMFILE_LOG_MS) {
        w->emfile_log_ms = now ? now : 1;
        sf__server_log(w->s, "accept: %s (clients turned away so far: %llu)",
                       sf_strerror(code), (unsigned long long)w->st.emfile);
    }
}

/* A bounded batch keeps one busy listener from starving the connections. */
static void
tcp_accept_batch(worker *w, lsock *ls)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        sf_trace t, *tp = sf__server_trace(w->s, &t, 0);
        int fd;

        lock_accept(w->s);
        fd = sf_tcp_accept(tp, ls->fd, NULL);
        if (fd == -EMFILE || fd == -ENFILE)
            shed_connections(w, ls);
        unlock_accept(w->s);
        if (fd >= 0) {
            sf__tcp_start_accepted(w, ls, fd);
            continue;
        }
        if (sf_accept_error_is_transient(fd))
            continue;   /* that connection is gone, the listener is fine: the next */
        if (fd == -EMFILE || fd == -ENFILE)
            sf__accept_out_of_descriptors(w, fd);
        else if (fd != SF_EAGAIN)
            sf__server_log(w->s, "accept: %s", sf_strerror(fd));
        return;
    }
}

void
sf__tcp_accept_ready(sf_loop *l, int lfd, int events, void *ud)
{
    lsock *ls = ud;
    worker *w = ls->w;

    (void)l;
    (void)lfd;
    (void)events;
    sf__worker_enter(w);
    tcp_accept_batch(w, ls);
    sf__worker_leave(w);
}

