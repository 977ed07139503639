/* fuzz_opts: libFuzzer harness for the command's option-value parsers (counts, seconds,
 * sizes) and for whole `serve`/`connect` command lines parsed up to the point where they
 * would bind or connect. */
#include <stdint.h>
#include <string.h>

#include "cmd/cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[256];

    if (size >= sizeof(text))
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (cmd_parse_count(text, 1000) > 1000)
        __builtin_trap();
    if (cmd_parse_secs_ms(text) < -1)
        __builtin_trap();
    if (cmd_parse_size(text) < -1)
        __builtin_trap();
    return 0;
}
