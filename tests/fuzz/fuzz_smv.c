/* libFuzzer harness: the SMV reader (db_smv_read, db_smv_header_double), and the same file as -img and -mask
 * through db_config_parse + db_sim_create. */
#include "fuzz_common.h"
#include "smv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_temp_file("smv", data, size);
    db_smv_image img;
    db_error err;
    if (db_smv_read(path, &img, &err) == DB_OK) {
        static const char *const keys[] = {"PIXEL_SIZE", "DISTANCE", "WAVELENGTH", "BEAM_CENTER_X", "PHI", "SIZE1"};
        double v;
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) (void)db_smv_header_double(&img, keys[k], &v);
        /* the pixels were checked to be there: touch the last one */
        volatile uint16_t last = img.data[(size_t)img.fpixels * (size_t)img.spixels - 1];
        (void)last;
        int small = (size_t)img.fpixels * (size_t)img.spixels <= 4096;
        db_smv_image_free(&img);
        if (small) { /* larger detectors would only spend the fuzzing time on geometry set-up */
            const char *as_img[] = {"-cell", "100", "-default_F", "100", "-oversample", "1", "-img", path};
            fuzz_config_and_create(8, as_img);
            const char *as_mask[] = {"-cell", "100", "-default_F", "100", "-oversample", "1", "-mask", path};
            fuzz_config_and_create(8, as_mask);
        }
    }
    return 0;
}
