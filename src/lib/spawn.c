/* spawn: fork and exec a program for one connection. The exec's failure comes back
 * through a close-on-exec pipe, so the caller learns "No such file" as an error, not as
 * a child that exits 127. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sockflow/addr.h"
#include "sockflow/sock.h"
#include "sockflow/spawn.h"

extern char **environ;

#define ENV_OURS 5

static const char *const our_names[ENV_OURS] = {
    "PROTO=", "TCPLOCALIP=", "TCPLOCALPORT=", "TCPREMOTEIP=", "TCPREMOTEPORT=",
};

int
sf_spawn_cmd_split(sf_spawn_cmd *cmd, const char *text, sf_err *err)
{
    size_t n = 0, len;
    char *copy, *tok, *save = NULL;

    text += strspn(text, " \t");   /* so the first token starts the copy, freed by it */
    len = strlen(text);
    cmd->shell = NULL;
    cmd->argv = calloc(len / 2 + 2, sizeof(char *));
    copy = strdup(text);
    if (cmd->argv == NULL || copy == NULL) {
        free(cmd->argv);
        free(copy);
        cmd->argv = NULL;
        return sf_err_set(err, -ENOMEM, "-e");
    }
    for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
        cmd->argv[n++] = tok;
    if (n == 0) {
        free(copy);
        free(cmd->argv);
        cmd->argv = NULL;
        return sf_err_set(err, SF_EUSAGE, "-e: no program named");
    }
    return 0;
}

void
sf_spawn_cmd_free(sf_spawn_cmd *cmd)
{
    if (cmd->argv) {
        free(cmd->argv[0]);     /* the copy every token points into */
        free(cmd->argv);
    }
    cmd->argv = NULL;
}

static int
is_ours(const char *entry)
{
    for (int i = 0; i < ENV_OURS; i++)
        if (strncmp(entry, our_names[i], strlen(our_names[i])) == 0)
            return 1;
    return 0;
}

/* "NAME=host" and "NAME=port" for one end of the connection. */
static void
address_vars(const sf_addr *a, const char *ipname, const char *portname, char *ip,
             char *port, size_t len)
{
    char text[SF_ADDR_STRLEN];
    char *colon;

    sf_addr_format(a, text, sizeof(text));
    colon = strrchr(text, ':');
    if (colon)
        *colon = '\0';
    snprintf(ip, len, "%s=%s", ipname, text[0] == '[' ? text + 1 : text);
    if ((colon = strchr(ip, ']')) != NULL)
        *colon = '\0';
    snprintf(port, len, "%s=%d", portname, sf_addr_port(a));
}

/* The child's environment: ours without the variables we set, then ours. Made before
 * fork, as malloc is not safe in the child of a threaded process. vars holds the
 * strings (ENV_OURS of 160 bytes). */
static char **
child_env(int sock_fd, char vars[ENV_OURS][160])
{
    sf_addr local, peer;
    size_t n = 0, k = 0;
    char **env;
    int type = 0;
    socklen_t tl = sizeof(type);

    while (environ && environ[n])
        n++;
    env = calloc(n + ENV_OURS + 1, sizeof(char *));
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!is_ours(environ[i]))
            env[k++] = environ[i];
    getsockopt(sock_fd, SOL_SOCKET, SO_TYPE, &type, &tl);
    if (sf_local_addr(sock_fd, &local) < 0 || sf_addr_family(&local) == AF_UNIX) {
        snprintf(vars[0], 160, "PROTO=UNIX");
        env[k++] = vars[0];
        return env;
    }
    snprintf(vars[0], 160, "PROTO=%s", type == SOCK_DGRAM ? "UDP" : "TCP");
    env[k++] = vars[0];
    address_vars(&local, "TCPLOCALIP", "TCPLOCALPORT", vars[1], vars[2], 160);
    env[k++] = vars[1];
    env[k++] = vars[2];
    if (sf_peer_addr(sock_fd, &peer) == 0) {
        address_vars(&peer, "TCPREMOTEIP", "TCPREMOTEPORT", vars[3], vars[4], 160);
        env[k++] = vars[3];
        env[k++] = vars[4];
    }
    return env;
}

/* The kernel's struct for rt_sigaction. glibc keeps signals 32 and 33 (SIGRTMIN-2,
 * SIGRTMIN-1) for itself and refuses to change them; a parent (make does) may have left
 * them ignored, and an ignored signal stays ignored across exec. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

static void
default_signal(int signo)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    struct kernel_sigaction kdfl = { .handler = SIG_DFL };

    if (sigaction(signo, &dfl, NULL) < 0 && errno == EINVAL)
        syscall(SYS_rt_sigaction, signo, &kdfl, NULL, sizeof(kdfl.mask));
}

/* In the child: only async-signal-safe calls until exec. */
static void __attribute__((noreturn))
child(const sf_spawn_cmd *cmd, int sock_fd, int report_fd, char **env)
{
    const char *shargv[4] = { "/bin/sh", "-c", cmd->shell, NULL };
    sigset_t none;
    int e, fl;

    setpgid(0, 0);
    /* Ignored signals stay ignored across exec (SIGPIPE is, in a server): reset them,
     * and the mask the server's signalfd needs. */
    for (int s = 1; s < NSIG; s++)
        default_signal(s);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(sock_fd, 0) < 0 || dup2(sock_fd, 1) < 0)
        goto fail;
    fl = fcntl(0, F_GETFL);
    if (fl >= 0)
        fcntl(0, F_SETFL, fl & ~O_NONBLOCK);
    /* Nothing else of the server's: no listener, no other client. Close-on-exec is set
     * everywhere already; this holds for descriptors someone else opened too. */
    if (report_fd > 3)
        close_range(3, (unsigned)report_fd - 1, 0);
    close_range((unsigned)report_fd + 1, ~0u, 0);
    if (cmd->shell)
        execve("/bin/sh", (char *const *)shargv, env);
    else
        execvpe(cmd->argv[0], cmd->argv, env);
fail:
    e = errno;
    (void)!write(report_fd, &e, sizeof(e));
    _exit(127);
}

pid_t
sf_spawn(const sf_spawn_cmd *cmd, int sock_fd, sf_err *err)
{
    const char *what = cmd->shell ? "/bin/sh" : cmd->argv[0];
    char vars[ENV_OURS][160];
    char **env = child_env(sock_fd, vars);
    int pipefd[2], e = 0;
    ssize_t n;
    pid_t pid;

    if (env == NULL)
        return sf_err_set(err, -ENOMEM, "exec %s", what);
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        free(env);
        return sf_err_set(err, -errno, "exec %s: pipe", what);
    }
    pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        child(cmd, sock_fd, pipefd[1], env);
    }
    e = errno;
    close(pipefd[1]);
    free(env);
    if (pid < 0) {
        close(pipefd[0]);
        return sf_err_set(err, -e, "fork for %s", what);
    }
    setpgid(pid, pid);  /* also here: whichever runs first, the group exists after */
    do {
        n = read(pipefd[0], &e, sizeof(e));
    } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof(e)) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return sf_err_set(err, -e, "exec %s", what);
    }
    return pid;
}

pid_t
sf_spawn_reap(int *status)
{
    pid_t pid;

    do {
        pid = waitpid(-1, status, WNOHANG);
    } while (pid < 0 && errno == EINTR);
    return pid < 0 ? -errno : pid;
}

char *
sf_spawn_status_text(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by SIG%s", sigabbrev_np(WTERMSIG(status))
                 ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, len, "status %#x", status);
    return buf;
}

int
sf_spawn_signal(pid_t pid, int signo)
{
    return kill(-pid, signo) < 0 ? -errno : 0;
}
