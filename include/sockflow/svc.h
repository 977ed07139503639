/* svc: the services sockflow can serve (echo ...), found by name. */
#ifndef SOCKFLOW_SVC_H
#define SOCKFLOW_SVC_H

#include "server.h"

extern const sf_service sf_svc_echo;

/* The service called name, or NULL. */
const sf_service *sf_service_find(const char *name);

/* The table, NULL-terminated, in the order `sockflow serve --help` lists them. */
extern const sf_service *const sf_services[];

#endif
