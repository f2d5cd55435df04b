/* Per-team limits: the one comparison every limit goes through, and `taskgate team limits`. */
#ifndef TG_LIMITS_H
#define TG_LIMITS_H

struct tg_conf;

/* Whether want more on top of used stays within limit (0 or less: no limit). Returns 1 when
 * it does, 0 when the request is beyond the limit. The same test for every limit: in flight
 * (used = submissions pending, want = 1) and runs per minute (used = runs admitted this
 * clock minute, want = the submission's runs). */
int tg_limit_allows(long limit, long used, long want);

/* `taskgate team limits TEAM [--runs-per-minute N] [--in-flight N]`: argv starts at TEAM.
 * Prints the limits (after setting them when options are given). Returns the exit code. */
int tg_limits_cli(const struct tg_conf *conf, int argc, char **argv);

#endif
