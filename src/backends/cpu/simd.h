// Portable SIMD for the CPU backend's hand-written loops (normalizations, Gelu, attention).
//
// A vector is 16 floats as a GCC vector extension: the compiler lowers it to whatever the
// function is compiled for. Kernels mark their hot loops TANDEM_SIMD_CLONES, which (GCC on
// x86-64) builds each such function three times — AVX-512 (x86-64-v4), AVX2+FMA (x86-64-v3) and
// the baseline — and picks one at load time from the CPU it runs on. The helpers below are
// always inlined into those clones, so they are compiled for the clone's instruction set.
//
// exp, erf, tanh and sigmoid are polynomial approximations (a few float32 ulp for exp; about
// 1.5e-7 absolute for erf), checked against the reference kernels in the CPU-vs-ref tests.
#pragma once

#include <cstdint>
#include <cstring>

// A function taking or returning a 64-byte vector compiled for a target without AVX-512 gets a
// "-Wpsabi" note about the calling convention; these helpers are always inlined, so the ABI
// never matters.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_ADDRESS__)
#define TANDEM_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TANDEM_SIMD_CLONES
#endif
#define TANDEM_SIMD_INLINE __attribute__((always_inline)) inline

namespace tandem::cpu::simd {

constexpr int64_t kWidth = 16;  // floats per vector
typedef float vfloat __attribute__((vector_size(64)));
typedef int32_t vint __attribute__((vector_size(64)));

TANDEM_SIMD_INLINE vfloat splat(float v) {
  // (Not vfloat{} + v: -0.0 + 0.0 is +0.0, so that is a real addition before the broadcast.)
  vfloat r;
  for (int i = 0; i < 16; ++i) r[i] = v;
  return r;
}
TANDEM_SIMD_INLINE vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
TANDEM_SIMD_INLINE void store(float* p, vfloat v) {
  std::memcpy(p, &v, sizeof v);
}
// The first n (< kWidth) lanes from p; the others are `fill`.
TANDEM_SIMD_INLINE vfloat load_partial(const float* p, int64_t n, float fill = 0.0f) {
  vfloat v = splat(fill);
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
}
TANDEM_SIMD_INLINE void store_partial(float* p, vfloat v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = v[i];
}

TANDEM_SIMD_INLINE vfloat max(vfloat a, vfloat b) {
  return a > b ? a : b;
}
TANDEM_SIMD_INLINE vfloat min(vfloat a, vfloat b) {
  return a < b ? a : b;
}
TANDEM_SIMD_INLINE vfloat abs(vfloat a) {
  return (vfloat)((vint)a & 0x7fffffff);
}
// a with the sign of s.
TANDEM_SIMD_INLINE vfloat copysign(vfloat a, vfloat s) {
  return (vfloat)(((vint)a & 0x7fffffff) | ((vint)s & (int32_t)0x80000000));
}

typedef float vfloat8 __attribute__((vector_size(32)));
typedef float vfloat4 __attribute__((vector_size(16)));

// Sum and maximum of the 16 lanes (halving tree).
TANDEM_SIMD_INLINE float reduce_add(vfloat v) {
  vfloat8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
              __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  vfloat4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}
TANDEM_SIMD_INLINE float reduce_max(vfloat v) {
  vfloat8 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
  vfloat8 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  vfloat8 a = lo > hi ? lo : hi;
  vfloat4 c = __builtin_shufflevector(a, a, 0, 1, 2, 3),
          d = __builtin_shufflevector(a, a, 4, 5, 6, 7);
  vfloat4 b = c > d ? c : d;
  const float m0 = b[0] > b[2] ? b[0] : b[2], m1 = b[1] > b[3] ? b[1] : b[3];
  return m0 > m1 ? m0 : m1;
}

// e^x: x = n ln2 + r with |r| <= ln2 / 2, e^r by a degree-6 polynomial (Cephes' expf), 2^n
// through the exponent bits. x is first clamped to [-87.3, 88], so far below the range the
// result is e^-87.3 (1.2e-38, as good as 0 next to any sum it joins) rather than a denormal, and
// far above it is finite; NaN stays NaN.
TANDEM_SIMD_INLINE vfloat exp(vfloat x) {
  const vfloat lo = splat(-87.33654f), hi = splat(88.0f);
  // Written so that a NaN x fails both tests and passes through.
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  // Round x / ln2 to the nearest integer n by adding 1.5 * 2^23: the sum's low mantissa bits
  // hold n.
  const vfloat shifter = splat(12582912.0f);
  const vfloat t = x * 1.44269504088896341f + shifter;
  const vfloat n = t - shifter;
  vfloat r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  vfloat p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^n for n in [-126, 127]: (n + 127) in the exponent field.
  const vint scale = ((vint)t - (vint)shifter + 127) << 23;
  return p * (vfloat)scale;
}

// erf(x), Abramowitz & Stegun 7.1.26: 1 - (a1 t + ... + a5 t^5) e^(-x^2), t = 1 / (1 + p|x|),
// absolute error below 1.5e-7; odd in x.
TANDEM_SIMD_INLINE vfloat erf(vfloat x) {
  vfloat a = abs(x);
  vfloat t = 1.0f / (a * 0.3275911f + 1.0f);
  vfloat q = splat(1.061405429f);
  q = q * t - 1.453152027f;
  q = q * t + 1.421413741f;
  q = q * t - 0.284496736f;
  q = q * t + 0.254829592f;
  vfloat y = 1.0f - q * t * exp(-a * a);
  return copysign(y, x);
}

// tanh(x) = (1 - e) / (1 + e) with e = e^(-2|x|), signed; never overflows.
TANDEM_SIMD_INLINE vfloat tanh(vfloat x) {
  vfloat e = exp(abs(x) * -2.0f);
  return copysign((1.0f - e) / (1.0f + e), x);
}

// 1 / (1 + e^-x).
TANDEM_SIMD_INLINE vfloat sigmoid(vfloat x) {
  return 1.0f / (1.0f + exp(-x));
}

}  // namespace tandem::cpu::simd

#pragma GCC diagnostic pop
