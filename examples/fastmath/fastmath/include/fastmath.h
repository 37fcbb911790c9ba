/* fastmath.h: the public C header of wg-demo-fastmath, shipped inside the wheel.
 *
 * Other packages compile against it at build time; find it with fastmath.get_include().
 * Bump FASTMATH_HEADER_VERSION whenever anything here changes: every package that
 * includes this header must then be rebuilt.
 */
#ifndef FASTMATH_H
#define FASTMATH_H

#define FASTMATH_HEADER_VERSION 1

/* The scale applied to every element before it is accumulated. */
#define FASTMATH_UNIT 1.0

/* Usable from host C/C++ and, under nvcc, from device code too. */
#ifdef __CUDACC__
#define FM_INLINE __host__ __device__ static inline
#else
#define FM_INLINE static inline
#endif

FM_INLINE double fm_scale(double x)
{
    return x * FASTMATH_UNIT;
}

#endif /* FASTMATH_H */
