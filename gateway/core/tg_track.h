/* The run tracker: a thread of the daemon that follows every task group with runs of the
 * gateway's that are not finished (the group's event stream, GET .../groups/{id}/events,
 * resumed from the last event recorded) and records each run's status changes, until none
 * of the group's runs is active; and the reading of a TaskRun, which the webhooks carry
 * too. All the streams run on the one thread, over libcurl's multi interface. */
#ifndef TG_TRACK_H
#define TG_TRACK_H

#include <json-c/json.h>

#include "tg_conf.h"
#include "tg_store.h"

/* Starts the thread: it follows at most conf's track_groups_max groups at once (none when
 * it is 0: it then only removes webhook-ids older than a week), taking the groups no daemon
 * follows, oldest first. conf must outlive it. TG_OK or TG_ERR. */
int tg_track_start(const struct tg_conf *conf);

/* Stops the thread: the streams are closed, what was read of them recorded, and every group
 * handed back so that another daemon (or the next start) resumes where this one stopped.
 * Nothing when it is not running. */
void tg_track_stop(void);

/* Reads a TaskRun object (an event's "run", a webhook's "data") into c: run_id, status,
 * the error's message when it failed, and modified_at as changed_ms (0 when absent or not
 * a time). Strings point into run. TG_OK, or TG_EINVAL when it has no run id (or one longer
 * than TG_TRACK_ID_MAX) or no status of the upstream's. */
int tg_track_run_change(json_object *run, struct tg_run_change *c);

#endif
