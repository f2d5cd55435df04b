/* Per-team limits from the command line: `taskgate team limits` (the comparison every limit
 * goes through is tg_domain_limit_allows in tg_domain.h). */
#ifndef TG_LIMITS_H
#define TG_LIMITS_H

struct tg_conf;

/* `taskgate team limits TEAM [--runs-per-minute N] [--in-flight N]`: argv starts at TEAM.
 * Prints the limits (after setting them when options are given). Returns the exit code. */
int tg_limits_cli(const struct tg_conf *conf, int argc, char **argv);

#endif
