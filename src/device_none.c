/* device_none.c: the CUDA entry points of a build without CUDA (no nvcc at configure time, or -DDUALBRAGG_CUDA=OFF):
 * -device cuda is then a clear error, never a silent CPU run. */
#include "device.h"

#include <stdio.h>

int db_cuda_usable(char *name, size_t name_size, char *why, size_t why_size)
{
    if (name && name_size) name[0] = 0;
    if (why) snprintf(why, why_size, "this dualbragg was built without CUDA (no nvcc when it was configured)");
    return 0;
}

void db_cuda_context_free(void *ctx) { (void)ctx; }
double db_cuda_kernel_ms(const void *ctx) { (void)ctx; return 0.0; }
size_t db_cuda_context_bytes(const void *ctx) { (void)ctx; return 0; }
