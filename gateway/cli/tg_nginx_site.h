/* The nginx site in front of the daemon, rendered from its config (tg_nginx_site.c). */
#ifndef TG_NGINX_SITE_H
#define TG_NGINX_SITE_H

#include <stddef.h>

#include "tg_conf.h"
#include "tg_core.h"

/* Appends the site for c to out. TG_OK; TG_EINVAL when the config cannot be rendered (an
 * upstream_url nginx cannot proxy, no resolver for a host name), TG_ERR when the template
 * names a value the renderer does not know, TG_ENOMEM; the reason in err. */
int tg_nginx_site_render(const struct tg_conf *c, struct tg_buf *out, char *err,
                         size_t errlen);

/* `taskgate nginx-site`: the site on stdout; 0, or 1 with the reason on stderr. */
int tg_nginx_site_cli(const struct tg_conf *conf, int argc, char **argv);

#endif
