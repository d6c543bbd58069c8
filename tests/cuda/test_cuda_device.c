/* CUDA device discovery: on a machine with a GPU it must report at least one
 * device with sane properties; without one it must say why and skip. */
#include "md_test.h"
#include "md-cuda.h"

int main(void)
{
    char why[512] = "";
    int n = md_cuda_device_count(why, sizeof why);
    CHECK(n >= 0);
    if (n == 0) {
        CHECK(why[0] != '\0');
        SKIP("no CUDA device on this machine (%s)", why);
    }
    for (int i = 0; i < n; i++) {
        struct md_cuda_device_info info;
        CHECK(md_cuda_device_info(i, &info, why, sizeof why) == 0);
        CHECK(info.name[0] != '\0');
        CHECK(info.cc_major >= 5);
        CHECK(info.total_mem > ((size_t)1 << 30));
        CHECK(info.n_sm > 0);
        printf("cuda:%d %s sm_%d%d %zu MiB %d SMs\n", i, info.name, info.cc_major,
               info.cc_minor, info.total_mem >> 20, info.n_sm);
    }
    struct md_cuda_device_info bad;
    CHECK(md_cuda_device_info(n, &bad, why, sizeof why) == -1);
    return md_test_finish("cuda_device");
}
