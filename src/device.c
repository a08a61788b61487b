/* device.c: the device names (device.h), a leaf: the parser (config_flags.c) and the run layer (run.c) both read them. */
#include "device.h"

#include <string.h>

int db_device_from_name(const char *name)
{
    static const char *const names[] = {"cpu", "cuda", "auto", "emulate"};
    static const int ids[] = {DB_DEVICE_CPU, DB_DEVICE_CUDA, DB_DEVICE_AUTO, DB_DEVICE_EMULATE};
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, names[i]) == 0) return ids[i];
    return -1;
}
