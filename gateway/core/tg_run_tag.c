/* The gateway's run tag (see tg_run_tag.h): its one writer and its one reader. */
#include "tg_run_tag.h"

#include <stdio.h>
#include <string.h>

const char *tg_run_tag(struct tg_pool *pool, const char *sub_id, int seq, size_t first,
                       size_t count)
{
    return tg_pool_printf(pool, "%s.%d.%zu.%zu", sub_id, seq, first, count);
}

size_t tg_run_tag_sub_len(const char *tag)
{
    const char *dot = tag != NULL ? strchr(tag, '.') : NULL;
    return dot != NULL ? (size_t)(dot - tag) : 0;
}

int tg_run_tag_parse(const char *tag, const char *prefix, size_t prefix_len, int *seq,
                     long *first, long *count)
{
    char rest;
    return tag != NULL && strncmp(tag, prefix, prefix_len) == 0 &&
           sscanf(tag + prefix_len, "%d.%ld.%ld%c", seq, first, count, &rest) == 3 &&
           *seq >= 0 && *first >= 0 && *count > 0;
}
