/* svc: the services sockflow can serve (echo, discard, chargen, daytime, time, chat),
 * found by name. */
#ifndef SOCKFLOW_SVC_H
#define SOCKFLOW_SVC_H

#include <time.h>
#include "server.h"

extern const sf_service sf_svc_echo;      /* RFC 862 */
extern const sf_service sf_svc_discard;   /* RFC 863 */
extern const sf_service sf_svc_chargen;   /* RFC 864 */
extern const sf_service sf_svc_daytime;   /* RFC 867 */
extern const sf_service sf_svc_time;      /* RFC 868 */
extern const sf_service sf_svc_chat;      /* line relay between the clients */

/* exec: "exec:PORT=PROGRAM [ARGS]" (split at blanks, no shell) runs PROGRAM for each
 * TCP client with the socket as its standard input and output (sockflow/spawn.h). */
int sf_svc_exec_is(const char *spec);
/* A new exec service from spec, its port in *port; NULL with err set. Free it with
 * sf_svc_exec_free once the server using it is freed. */
sf_service *sf_svc_exec_new(const char *spec, int *port, sf_err *err);
void sf_svc_exec_free(sf_service *svc);

/* The service called name, or NULL. */
const sf_service *sf_service_find(const char *name);

/* The table, NULL-terminated, in the order `sockflow serve --help` lists them. */
extern const sf_service *const sf_services[];

/* chargen: 72 printable characters + CRLF per line, from a ring of the 95 characters
 * 0x20..0x7E; line i starts at ring offset i mod 95. Writes line number line into out. */
#define SF_CHARGEN_LINE 74
#define SF_CHARGEN_RING 95
void sf_chargen_line(unsigned line, char out[SF_CHARGEN_LINE]);

/* daytime: t as ctime's 24 characters + CRLF ("Mon Nov 23 21:58:18 2026\r\n") in local
 * time. Returns SF_DAYTIME_LINE, or -1 for a date that does not fit. */
#define SF_DAYTIME_LINE 26
int sf_daytime_line(time_t t, char out[SF_DAYTIME_LINE]);

/* time: t as RFC 868 seconds since 1900-01-01, 32 bits big-endian. */
void sf_time_value(time_t t, unsigned char out[4]);

/* chat: longest line relayed, without its '\n'; a longer one gets an error and a close. */
#define SF_CHAT_LINE_MAX 4096

/* chat: the n bytes of line as relayed to the others' terminals, shown and not obeyed: C0
 * controls but TAB, and DEL, in caret form ("\x1b[2K" becomes "^[[2K", CR "^M", DEL "^?"),
 * C1 controls as "\u009b" when UTF-8, as "\x9b" when a lone byte (CSI to an 8-bit
 * terminal); all else as sent. Writes at most SF_CHAT_RENDER_MAX(n) bytes to out (no
 * NUL); returns how many. */
#define SF_CHAT_RENDER_MAX(n) (4 * (n))
size_t sf_chat_render(char *out, const char *line, size_t n);

#endif
