/* services: the table of services, by name. Adding one is one line here. */
#include <string.h>

#include "sockflow/svc.h"

const sf_service *const sf_services[] = {
    &sf_svc_echo,
    &sf_svc_discard,
    &sf_svc_chargen,
    &sf_svc_daytime,
    &sf_svc_time,
    &sf_svc_chat,
    NULL,
};

const sf_service *
sf_service_find(const char *name)
{
    for (int i = 0; sf_services[i]; i++)
        if (strcmp(sf_services[i]->name, name) == 0)
            return sf_services[i];
    return NULL;
}
