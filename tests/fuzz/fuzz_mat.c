/* libFuzzer harness: the -mat reader, through db_config_parse + db_sim_create on a small detector. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_temp_file("mat", data, size);
    const char *argv[] = {"-mat", path, "-default_F", "100", "-N", "3", "-detpixels", "8", "-oversample", "1"};
    fuzz_config_and_create((int)(sizeof argv / sizeof *argv), argv);
    return 0;
}
