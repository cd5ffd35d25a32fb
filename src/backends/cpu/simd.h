// Portable SIMD for the CPU backend's hand-written loops (normalizations, Gelu, attention).
//
// Vectors are GCC vector extensions of 4, 8 or 16 floats (vfloat4 / vfloat8 / vfloat16). A kernel
// writes its loop once, as an always-inline template `name_body<V>` over the vector type, and
// TANDEM_SIMD_DISPATCH(name, (params), (args)) builds `name(params)`: on x86-64 with GCC it
// compiles the body three times — 16 floats for AVX-512 (x86-64-v4), 8 for AVX2 + FMA
// (x86-64-v3), 4 for the SSE2 baseline — and calls the one the CPU supports (checked once). Each
// version uses vectors as wide as its registers: a vector wider than the target's registers is
// not split cleanly by GCC (comparisons and selects become per-lane scalar code).
//
// A kernel whose data layout depends on the vector width (weights packed in panels of whole
// vectors) must run every step at the width it packed for: it reads level() once, packs with
// lanes_at(level), and calls functions made by TANDEM_SIMD_DISPATCH_AT, which take that level as
// their first argument instead of reading it again.
//
// exp, erf, tanh (two ways) and sigmoid are polynomial approximations (about 2 float32 ulp for
// exp; about 1.5e-7 absolute for erf), checked against the reference kernels in the CPU-vs-ref
// tests.
#pragma once

#include <cstdint>
#include <cstring>

// A function taking or returning a vector wider than its target's registers gets a "-Wpsabi"
// note about the calling convention; the helpers here are always inlined, so the ABI never
// matters (and vfloat16 is only used in functions compiled for AVX-512).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

#define TANDEM_SIMD_INLINE __attribute__((always_inline)) inline

namespace tandem::cpu::simd {

typedef float vfloat4 __attribute__((vector_size(16)));
typedef float vfloat8 __attribute__((vector_size(32)));
typedef float vfloat16 __attribute__((vector_size(64)));
typedef int32_t vint4 __attribute__((vector_size(16)));
typedef int32_t vint8 __attribute__((vector_size(32)));
typedef int32_t vint16 __attribute__((vector_size(64)));

// Floats per vector of type V, and the int32 vector of the same width.
template <class V>
inline constexpr int64_t lanes = static_cast<int64_t>(sizeof(V) / sizeof(float));
template <class V>
struct IntOf;
template <>
struct IntOf<vfloat4> {
  using type = vint4;
};
template <>
struct IntOf<vfloat8> {
  using type = vint8;
};
template <>
struct IntOf<vfloat16> {
  using type = vint16;
};
template <class V>
using vint_of = typename IntOf<V>::type;

// Which version runs: 2 = AVX-512 (x86-64-v4), 1 = AVX2 + FMA (x86-64-v3), 0 = baseline; the
// best the CPU supports, at most the cap.
int level();
// Caps level() (tests run the narrower versions this way; the environment variable
// TANDEM_SIMD_LEVEL=0|1 sets the cap at start-up); 2 lifts the cap.
void cap_level(int max_level);

// Floats per vector in the version that runs at `level` (a value level() returned).
inline int64_t lanes_at(int level) {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  return level >= 2 ? 16 : level == 1 ? 8 : 4;
#else
  (void)level;
  return 4;  // one version only (see TANDEM_SIMD_DISPATCH)
#endif
}

// Vector registers the version using V has: 32 for AVX-512's vfloat16, 16 otherwise (AVX2's
// ymm, SSE2's xmm on x86-64; at least that elsewhere). For sizing register tiles.
template <class V>
inline constexpr int registers = sizeof(V) == 64 ? 32 : 16;

template <class V>
TANDEM_SIMD_INLINE V splat(float v) {
  // (Not V{} + v: -0.0 + 0.0 is +0.0, so that is a real addition before the broadcast.)
  V r;
  for (int64_t i = 0; i < lanes<V>; ++i) r[i] = v;
  return r;
}
template <class V>
TANDEM_SIMD_INLINE V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
TANDEM_SIMD_INLINE void store(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
// The first n (< lanes) values from p; the other lanes are `fill`.
template <class V>
TANDEM_SIMD_INLINE V load_partial(const float* p, int64_t n, float fill = 0.0f) {
  V v = splat<V>(fill);
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
}
template <class V>
TANDEM_SIMD_INLINE void store_partial(float* p, V v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = v[i];
}

template <class V>
TANDEM_SIMD_INLINE V max(V a, V b) {
  return a > b ? a : b;
}
template <class V>
TANDEM_SIMD_INLINE V min(V a, V b) {
  return a < b ? a : b;
}
template <class V>
TANDEM_SIMD_INLINE V abs(V a) {
  return (V)((vint_of<V>)a & 0x7fffffff);
}
// a with the sign of s.
template <class V>
TANDEM_SIMD_INLINE V copysign(V a, V s) {
  using VI = vint_of<V>;
  return (V)(((VI)a & 0x7fffffff) | ((VI)s & INT32_MIN));
}

// Sum and maximum of the lanes (halving tree).
TANDEM_SIMD_INLINE float reduce_add(vfloat4 v) {
  return (v[0] + v[2]) + (v[1] + v[3]);
}
TANDEM_SIMD_INLINE float reduce_add(vfloat8 v) {
  return reduce_add(__builtin_shufflevector(v, v, 0, 1, 2, 3) +
                    __builtin_shufflevector(v, v, 4, 5, 6, 7));
}
TANDEM_SIMD_INLINE float reduce_add(vfloat16 v) {
  return reduce_add(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                    __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
}
TANDEM_SIMD_INLINE float reduce_max(vfloat4 v) {
  const float a = v[0] > v[2] ? v[0] : v[2], b = v[1] > v[3] ? v[1] : v[3];
  return a > b ? a : b;
}
TANDEM_SIMD_INLINE float reduce_max(vfloat8 v) {
  return reduce_max(
      max(__builtin_shufflevector(v, v, 0, 1, 2, 3), __builtin_shufflevector(v, v, 4, 5, 6, 7)));
}
TANDEM_SIMD_INLINE float reduce_max(vfloat16 v) {
  return reduce_max(max(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7),
                        __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15)));
}

// e^x = 2^n * 2^f with n = round(x log2 e) and f = x log2 e - n in [-1/2, 1/2]; 2^f by a
// degree-5 polynomial fitted for relative error (2.4e-7 at most, about 2 ulp), 2^n built in the
// exponent bits. x is first clamped to [-86.6, 88.3] (n in [-125, 127], so 2^n stays a normal
// float): far below the range the result is e^-86.6 (2.4e-38, as good as 0 next to any sum it
// joins), far above it saturates at 2.2e38; NaN stays NaN.
// (kUpTo0: the caller knows x <= 0 or NaN, as in a softmax after subtracting the maximum, so
// the upper clamp is left out.)
template <class V, bool kUpTo0 = false>
TANDEM_SIMD_INLINE V exp(V x) {
  using VI = vint_of<V>;
  const V lo = splat<V>(-86.6f), hi = splat<V>(88.3f);
  // Written so that a NaN x fails both tests and passes through.
  x = x < lo ? lo : x;
  if (!kUpTo0) x = x > hi ? hi : x;
  // Adding 1.5 * 2^23 rounds x log2 e to an integer n held in the low mantissa bits.
  const float log2e = 1.44269504088896341f;
  const V shifter = splat<V>(12582912.0f);
  const V t = x * log2e + shifter;
  const V n = t - shifter;
  const V f = x * log2e - n;
  V p = splat<V>(1.32764654699713e-3f);
  p = p * f + 9.675541892647743e-3f;
  p = p * f + 5.550713464617729e-2f;
  p = p * f + 2.4022120237350464e-1f;
  p = p * f + 6.931469440460205e-1f;
  p = p * f + 1.0000001192092896f;
  // 2^n: n + 127 in the exponent field.
  const VI scale = ((VI)t - ((VI)shifter - 127)) << 23;
  return p * (V)scale;
}

// erf(x), Abramowitz & Stegun 7.1.26: 1 - (a1 t + ... + a5 t^5) e^(-x^2), t = 1 / (1 + p|x|),
// absolute error below 1.5e-7; odd in x.
template <class V>
TANDEM_SIMD_INLINE V erf(V x) {
  const V a = abs(x);
  const V t = 1.0f / (a * 0.3275911f + 1.0f);
  V q = splat<V>(1.061405429f);
  q = q * t - 1.453152027f;
  q = q * t + 1.421413741f;
  q = q * t - 0.284496736f;
  q = q * t + 0.254829592f;
  const V y = 1.0f - q * t * exp(-a * a);
  return copysign(y, x);
}

// tanh(x) = (1 - e) / (1 + e) with e = e^(-2|x|), signed; never overflows.
template <class V>
TANDEM_SIMD_INLINE V tanh(V x) {
  const V e = exp(abs(x) * -2.0f);
  return copysign((1.0f - e) / (1.0f + e), x);
}

// tanh(x) = x P(x^2) / Q(x^2) on [-7.905, 7.905] (where float tanh reaches +-1), clamped beyond:
// the rational approximation Eigen uses (a few ulp, relative accuracy kept near 0; NaN stays
// NaN). Two independent polynomials and one division: a shorter dependency chain than tanh
// above, which matters in the recurrent cells, where each step waits on the last.
template <class V>
TANDEM_SIMD_INLINE V tanh_rational(V a) {
  const V hi = splat<V>(7.90531110763549805f), lo = -hi;
  V x = a < lo ? lo : a;  // written so that NaN fails both tests and passes through
  x = x > hi ? hi : x;
  const V x2 = x * x;
  V p = splat<V>(-2.76076847742355e-16f);
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 - 8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  V q = splat<V>(1.19825839466702e-06f);
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p * x / q;
}

// 1 / (1 + e^-x).
template <class V>
TANDEM_SIMD_INLINE V sigmoid(V x) {
  return 1.0f / (1.0f + exp(-x));
}

}  // namespace tandem::cpu::simd

// Defines `void name params` that runs name_body<V> args with the widest vectors the CPU has
// (see the top of this file). Use it at namespace scope after the body template.
// TANDEM_SIMD_DISPATCH_AT(name, params, args) defines `void name(int level, params)` instead,
// which runs the version for `level` (a value level() returned earlier).
#define TANDEM_SIMD_UNPAREN(...) __VA_ARGS__
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TANDEM_SIMD_VERSIONS(name, params, args)                        \
  __attribute__((target("arch=x86-64-v4"))) void name##_avx512 params { \
    name##_body<::tandem::cpu::simd::vfloat16> args;                    \
  }                                                                     \
  __attribute__((target("arch=x86-64-v3"))) void name##_avx2 params {   \
    name##_body<::tandem::cpu::simd::vfloat8> args;                     \
  }                                                                     \
  void name##_sse params {                                              \
    name##_body<::tandem::cpu::simd::vfloat4> args;                     \
  }
#define TANDEM_SIMD_SWITCH(name, args, level) \
  switch (level) {                            \
    case 2:                                   \
      name##_avx512 args;                     \
      return;                                 \
    case 1:                                   \
      name##_avx2 args;                       \
      return;                                 \
    default:                                  \
      name##_sse args;                        \
  }
#define TANDEM_SIMD_DISPATCH(name, params, args)                 \
  TANDEM_SIMD_VERSIONS(name, params, args)                       \
  void name params {                                             \
    TANDEM_SIMD_SWITCH(name, args, ::tandem::cpu::simd::level()) \
  }
#define TANDEM_SIMD_DISPATCH_AT(name, params, args)       \
  TANDEM_SIMD_VERSIONS(name, params, args)                \
  void name(int simd_level, TANDEM_SIMD_UNPAREN params) { \
    TANDEM_SIMD_SWITCH(name, args, simd_level)            \
  }
#else
#define TANDEM_SIMD_DISPATCH(name, params, args)    \
  void name params {                                \
    name##_body<::tandem::cpu::simd::vfloat4> args; \
  }
#define TANDEM_SIMD_DISPATCH_AT(name, params, args)           \
  void name(int /*simd_level*/, TANDEM_SIMD_UNPAREN params) { \
    name##_body<::tandem::cpu::simd::vfloat4> args;           \
  }
#endif

#pragma GCC diagnostic pop
