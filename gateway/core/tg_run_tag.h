/* The gateway's run tag: the metadata every run it creates carries, naming the submission,
 * the upstream call and the inputs of that call, so reconciliation can tell which runs a
 * call whose answer was lost did create. Written and read only here. */
#ifndef TG_RUN_TAG_H
#define TG_RUN_TAG_H

#include <stddef.h>

#include "tg_core.h"

/* The metadata key of the gateway's run tag (see tg_submit.h's run_tag): a team may not
 * use it itself. */
#define TG_RUN_TAG_KEY "taskgate"

/* The tag a run of call seq of submission sub_id carries in its metadata (key
 * TG_RUN_TAG_KEY): "<sub_id>.<seq>.<first input>.<inputs in the call>", in pool. */
const char *tg_run_tag(struct tg_pool *pool, const char *sub_id, int seq, size_t first,
                       size_t count);

/* The length of the submission id a run tag (may be NULL) begins with, so that a reader
 * of many submissions' runs can find whose it is; 0 when tag has no such part. */
size_t tg_run_tag_sub_len(const char *tag);

/* Whether tag (may be NULL) is a run tag of the submission whose "<sub_id>." is
 * prefix[0..prefix_len); if so, its call and inputs are in *seq, *first and *count. */
int tg_run_tag_parse(const char *tag, const char *prefix, size_t prefix_len, int *seq,
                     long *first, long *count);

#endif
