/* The FastCGI adapter: the only file that speaks libfcgi. It turns a FastCGI request into
 * a plain tg_request and writes a tg_response back. */
#ifndef TG_FCGI_H
#define TG_FCGI_H

#include <stddef.h>
#include <sys/types.h>

#include "tg_http.h"

struct tg_fcgi;

/* Initialises libfcgi once per process. TG_OK or TG_ERR. */
int tg_fcgi_init(void);

/* The unix socket file a daemon made, so that it removes only its own: another daemon may
 * have replaced it since. */
struct tg_fcgi_sock {
    dev_t dev;
    ino_t ino;
    int owned; /* a unix socket this process bound */
};

/* Opens the listening socket: a unix socket path or "host:port" / ":port". A unix socket
 * file left by a process that is gone is replaced; one that something still listens on is
 * not touched, and start-up fails. The new socket gets group (when not NULL or "") and
 * mode, and sock records it for tg_fcgi_unlink. Returns the descriptor, or -1 with a
 * message in err. */
int tg_fcgi_listen(const char *address, int backlog, long mode, const char *group,
                   struct tg_fcgi_sock *sock, char *err, size_t errlen);

/* Removes the socket file at address if it is still the one sock records. */
void tg_fcgi_unlink(const char *address, const struct tg_fcgi_sock *sock);

/* A connection slot on the listening descriptor fd, for one worker thread. */
struct tg_fcgi *tg_fcgi_new(int fd);
void tg_fcgi_free(struct tg_fcgi *f);

/* Waits for the next request. TG_OK, or TG_ERR when accepting failed (as it does once
 * the listening socket is shut down). */
int tg_fcgi_accept(struct tg_fcgi *f);

/* Fills req from the accepted request, copying into pool. A body over max_body is not
 * read and gives TG_ETOOBIG; TG_ENOMEM when the pool is exhausted. */
int tg_fcgi_read(struct tg_fcgi *f, struct tg_pool *pool, long max_body,
                 struct tg_request *req);

/* Writes resp (status line, headers, body) and ends the request. */
void tg_fcgi_write(struct tg_fcgi *f, const struct tg_request *req,
                   const struct tg_response *resp);

/* Ends the current request (after tg_fcgi_write, or to drop it). */
void tg_fcgi_finish(struct tg_fcgi *f);

#endif
