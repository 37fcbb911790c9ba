// fastmath CUDA kernels: compiled by nvcc only when FASTMATH_CUDA=1, then linked into fastmath._core.
#include <cuda_runtime.h>

#include "fastmath.h"

// Elementwise x[i] = fm_scale(x[i]) * y[i]; the host side sums the products.
__global__ void fm_mul_kernel(double *x, const double *y, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = fm_scale(x[i]) * y[i];
}

// The number of visible CUDA devices, or -1 if the runtime reports an error (no driver, no GPU).
extern "C" int fm_cuda_device_count(void)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error state
        return -1;
    }
    return count;
}
