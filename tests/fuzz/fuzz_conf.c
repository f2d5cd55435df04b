/* libFuzzer target: the config file parser, and the dump of whatever it accepted. Any
 * crash, leak or sanitizer report is a bug. */
#include <stddef.h>
#include <stdint.h>

#include "tg_conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tg_conf c;
    char err[512], dump[8192];
    tg_conf_defaults(&c);
    if (tg_conf_parse(&c, (const char *)data, size, "fuzz.conf", err, sizeof(err)) == 0)
        tg_conf_dump(&c, dump, sizeof(dump));
    return 0;
}
