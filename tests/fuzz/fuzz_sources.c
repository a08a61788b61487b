/* libFuzzer harness: the -sourcefile reader, through db_config_parse + db_sim_create on a small detector. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_temp_file("src", data, size);
    const char *argv[] = {"-cell", "100", "-default_F", "100", "-N", "3", "-detpixels", "8", "-oversample", "1",
                          "-sourcefile", path};
    fuzz_config_and_create((int)(sizeof argv / sizeof *argv), argv);
    return 0;
}
