// Reference kernels of the signal family: windows, DFT, STFT, MelWeightMatrix. Computed in
// double; the DFT is the plain O(n^2) sum (the oracle, not a fast transform).
#include "ops/signal.h"

#include <cmath>
#include <complex>
#include <numbers>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/value_io.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

using Complex = std::complex<double>;

// Generalised cosine window a0 - a1 cos(2 pi n / D) + a2 cos(4 pi n / D), D = N (periodic) or
// N - 1 (symmetric).
template <int kKind>
void window_kernel(const KernelContext& ctx, const SignalAttrs& attrs,
                   std::span<const Tensor* const>, std::span<Tensor* const> outputs) {
  static constexpr double kCoef[3][3] = {
      {0.5, 0.5, 0}, {25.0 / 46, 21.0 / 46, 0}, {0.42, 0.5, 0.08}};  // Hann, Hamming, Blackman
  const int64_t n = outputs[0]->numel();
  const bool periodic = attrs.periodic;
  const double denom = static_cast<double>(periodic ? n : n - 1);
  std::vector<double> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double t = denom > 0 ? 2 * std::numbers::pi * static_cast<double>(i) / denom : 0;
    w[static_cast<size_t>(i)] =
        kCoef[kKind][0] - kCoef[kKind][1] * std::cos(t) + kCoef[kKind][2] * std::cos(2 * t);
  }
  write_doubles(*outputs[0], w, ctx.node);
}

// out[k] = sum_j in[j] e^(-+2 pi i j k / len), j over the first min(in.size(), len) values
// (missing ones are zero padding); the inverse divides by len.
std::vector<Complex> dft(const std::vector<Complex>& in, int64_t len, int64_t bins, bool inverse) {
  std::vector<Complex> out(static_cast<size_t>(bins));
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(in.size()), len);
  const double sign = inverse ? 1 : -1;
  for (int64_t k = 0; k < bins; ++k) {
    Complex s = 0;
    for (int64_t j = 0; j < n; ++j) {
      // (j * k) % len keeps the angle small and exact for large indices.
      const double angle = sign * 2 * std::numbers::pi * static_cast<double>((j * k) % len) /
                           static_cast<double>(len);
      s += in[static_cast<size_t>(j)] * Complex(std::cos(angle), std::sin(angle));
    }
    out[static_cast<size_t>(k)] = inverse ? s / static_cast<double>(len) : s;
  }
  return out;
}

// Points j in [0, n) of one line of x: the real part at xv[at(j)], the imaginary part next to
// it when comps is 2 (0 otherwise).
template <typename At>
std::vector<Complex> read_line(const std::vector<double>& xv, int64_t n, int64_t comps,
                               const At& at) {
  std::vector<Complex> line(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const size_t e = static_cast<size_t>(at(j));
    line[static_cast<size_t>(j)] = Complex(xv[e], comps == 2 ? xv[e + 1] : 0);
  }
  return line;
}

// Bin k of a DFT as a (real, imaginary) pair at yv[at(k)].
template <typename At>
void write_bins(const std::vector<Complex>& bins, std::vector<double>& yv, const At& at) {
  for (size_t k = 0; k < bins.size(); ++k) {
    const size_t e = static_cast<size_t>(at(static_cast<int64_t>(k)));
    yv[e] = bins[k].real();
    yv[e + 1] = bins[k].imag();
  }
}

void dft_kernel(const KernelContext& ctx, const SignalAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const Tensor& y = *outputs[0];
  const int64_t rank = static_cast<int64_t>(x.rank());
  int64_t axis = attrs.axis;
  axis = axis < 0 ? axis + rank : axis;
  const int64_t comps = x.dim(static_cast<size_t>(rank - 1));
  const int64_t n_in = x.dim(static_cast<size_t>(axis)), bins = y.dim(static_cast<size_t>(axis));
  const int64_t len = inputs.size() > 1 && inputs[1] ? tensor_to_int64s(*inputs[1], node)[0] : n_in;
  TANDEM_CHECK(len > 0, ErrorCode::kInvalidArgument, "{}: dft_length {} must be positive",
               node.describe(), len);
  // [outer, n, inner] over the complex elements.
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.dim(static_cast<size_t>(d));
  for (int64_t d = axis + 1; d < rank - 1; ++d) inner *= x.dim(static_cast<size_t>(d));
  const std::vector<double> xv = read_doubles(x, node);
  std::vector<double> yv(static_cast<size_t>(y.numel()));
  const bool inverse = attrs.inverse;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      const std::vector<Complex> line = read_line(
          xv, n_in, comps, [&](int64_t j) { return ((o * n_in + j) * inner + in) * comps; });
      write_bins(dft(line, len, bins, inverse), yv,
                 [&](int64_t k) { return ((o * bins + k) * inner + in) * 2; });
    }
  }
  write_doubles(*outputs[0], yv, node);
}

// Frame f of batch b is signal[b, f*step : f*step + frame_length] times the window.
void stft_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                 std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const Tensor& y = *outputs[0];
  const int64_t batch = x.dim(0), length = x.dim(1), comps = x.dim(2);
  const int64_t step = tensor_to_int64s(*inputs[1], node)[0];
  const int64_t frames = y.dim(1), bins = y.dim(2);
  const bool has_window = inputs.size() > 2 && inputs[2];
  const int64_t frame = has_window ? inputs[2]->numel() : tensor_to_int64s(*inputs[3], node)[0];
  const std::vector<double> window = has_window
                                         ? read_doubles(*inputs[2], node)
                                         : std::vector<double>(static_cast<size_t>(frame), 1.0);
  const std::vector<double> xv = read_doubles(x, node);
  std::vector<double> yv(static_cast<size_t>(y.numel()));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t f = 0; f < frames; ++f) {
      std::vector<Complex> line = read_line(
          xv, frame, comps, [&](int64_t j) { return (b * length + f * step + j) * comps; });
      for (size_t j = 0; j < line.size(); ++j) line[j] *= window[j];
      write_bins(dft(line, frame, bins, false), yv,
                 [&](int64_t k) { return ((b * frames + f) * bins + k) * 2; });
    }
  }
  write_doubles(*outputs[0], yv, node);
}

// Triangular filters between mel-spaced points mapped to DFT bins (as the ONNX definition).
void mel_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const int64_t mels = outputs[0]->dim(1), spec_bins = outputs[0]->dim(0);
  const int64_t dft_length = tensor_to_int64s(*inputs[1], node)[0];
  const double rate = tensor_scalar_as_double(*inputs[2], node);
  const double lo = tensor_scalar_as_double(*inputs[3], node);
  const double hi = tensor_scalar_as_double(*inputs[4], node);
  TANDEM_CHECK(rate > 0 && lo >= 0 && hi > lo, ErrorCode::kInvalidArgument,
               "{}: need sample_rate > 0 and 0 <= lower_edge_hertz < upper_edge_hertz, got {}, "
               "{}, {}",
               node.describe(), rate, lo, hi);
  auto to_mel = [](double hz) { return 2595 * std::log10(1 + hz / 700); };
  // The ONNX definition spaces the mels + 2 points by (high - low) / (mels + 2).
  const double mel_lo = to_mel(lo), step = (to_mel(hi) - mel_lo) / static_cast<double>(mels + 2);
  std::vector<int64_t> bin(static_cast<size_t>(mels + 2));
  for (int64_t i = 0; i < mels + 2; ++i) {
    const double hz = 700 * (std::pow(10, (static_cast<double>(i) * step + mel_lo) / 2595) - 1);
    bin[static_cast<size_t>(i)] =
        static_cast<int64_t>(std::floor(static_cast<double>(dft_length + 1) * hz / rate));
  }
  std::vector<double> w(static_cast<size_t>(spec_bins * mels), 0.0);
  auto set = [&](int64_t j, int64_t i, double v) {
    if (j >= 0 && j < spec_bins) w[static_cast<size_t>(j * mels + i)] = v;
  };
  for (int64_t i = 0; i < mels; ++i) {
    const int64_t l = bin[static_cast<size_t>(i)], c = bin[static_cast<size_t>(i + 1)],
                  h = bin[static_cast<size_t>(i + 2)];
    if (c == l) {
      set(c, i, 1);
    } else {
      for (int64_t j = l; j <= c; ++j)
        set(j, i, static_cast<double>(j - l) / static_cast<double>(c - l));
    }
    for (int64_t j = c; j < h; ++j)
      set(j, i, static_cast<double>(h - j) / static_cast<double>(h - c));
  }
  write_doubles(*outputs[0], w, node);
}

}  // namespace

void register_signal_ref_kernels(KernelRegistry& r) {
  r.add("HannWindow", window_kernel<0>);
  r.add("HammingWindow", window_kernel<1>);
  r.add("BlackmanWindow", window_kernel<2>);
  r.add("DFT", dft_kernel);
  r.add("STFT", stft_kernel);
  r.add("MelWeightMatrix", mel_kernel);
}

}  // namespace tandem
