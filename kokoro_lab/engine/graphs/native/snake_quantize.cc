// kokoro_lab.SnakeQuantize: one resblock's AdaIN, Snake and DynamicQuantizeLinear in two reads of
// its input from memory, writing the time-major, padded uint8 tensor the next convolution's
// im2col reads.
//
// Why (kokoro_lab/engine/graphs/fused.py has the graph side): in the fused vocoder graph each of
// the ~48 resblock convolutions is preceded by InstanceNormalization, nine element-wise Snake
// passes, DynamicQuantizeLinear (a min/max pass and a quantize pass), a Transpose to time-major
// and a Pad: about a dozen passes over a float tensor of up to millions of elements, each a
// round trip to memory. They were two thirds of a first chunk's vocoder time (AMX CPU). Here:
//   pass 1  per channel c: mean and variance over time  ->  t = x * gain[c] + shift[c]
//   pass 2  y = snake(t) for every element of that row (still cached), for the min and max
//   pass 3  y again, quantized with DynamicQuantizeLinear's rule, channel-major into a scratch
//           buffer, then transposed in 16 x 16 byte blocks into the time-major output
// with the same arithmetic as the graph it replaces (kokoro_lab.engine.graphs.variants):
//   t = instance_norm(x) with scale a(1 + gamma)/pi and bias a*beta/pi   (inputs scale, bias)
//   f = t - round(t),  w = f*f,  y = (t + (c2*w + c1)*w) * out_scale[c]   (out_scale = pi/a)
//   step = (max(y, 0) - min(y, 0)) / 255,  zero = round(-min(y, 0) / step)
//   q = clamp(round(y / step) + zero, 0, 255),  rounding half to even as ONNX does.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace {

constexpr int64_t kChannelGroup = 8;   // channels per task of passes 1 and 2
constexpr int64_t kTimeTile = 256;     // frames per step of pass 3a
constexpr int64_t kSquare = 64;        // tile side of pass 3b

// Eight floats as one value (GCC and Clang vector extensions: AVX on x86, two NEON registers on
// Arm): written out, because the compiler may not vectorise a min/max or sum reduction by itself
// without -ffast-math, which would also fold away the rounding below.
typedef float Floats __attribute__((vector_size(32)));
constexpr int64_t kWidth = 8;
// round(v) as (v + 1.5 * 2^23) - 1.5 * 2^23: to nearest, ties to even (ONNX's rule), exact for
// |v| < 2^22; the graph being replaced rounds the Snake's input the same way.
constexpr float kRoundingShift = 12582912.0f;

struct Job {
  const float* x;
  const float* scale;
  const float* bias;
  const float* out_scale;
  float eps, c1, c2;
  int64_t channels, frames, left;
  std::vector<float> gain, shift, low, high;
  uint8_t* levels;  // C x T scratch, channel-major
  uint8_t* q;
  float step, zero;
};

// Per channel: u = x * gain + shift (the norm), y = (u + (w*c2 + c1)*w) * out with w = f^2,
// f = u - round(u). One template for a vector and a scalar (a row's last few frames).
template <typename T>
inline T Round(T v) { return (v + kRoundingShift) - kRoundingShift; }

template <typename T>
inline T Snake(T x, float gain, float shift, float out, float c1, float c2) {
  const T u = x * gain + shift;
  const T f = u - Round(u);
  const T w = f * f;
  return (u + (w * c2 + c1) * w) * out;
}

inline Floats Load(const float* p) {
  Floats v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Pass 1, per channel: mean and variance over time, as the norm's gain and shift.
void Normalise(Job& job, int64_t c) {
  const float* row = job.x + c * job.frames;
  const float origin = row[0];  // sums of x - x[0]: no cancellation in E[d^2] - E[d]^2
  Floats sums = {}, squares = {};
  int64_t t = 0;
  for (; t + kWidth <= job.frames; t += kWidth) {
    const Floats d = Load(row + t) - origin;
    sums += d;
    squares += d * d;
  }
  double sum = 0.0, square = 0.0;
  for (; t < job.frames; ++t) {
    sum += row[t] - origin;
    square += static_cast<double>(row[t] - origin) * (row[t] - origin);
  }
  for (int64_t l = 0; l < kWidth; ++l) {
    sum += sums[l];
    square += squares[l];
  }
  const double mean = sum / job.frames;
  const double variance = std::max(0.0, square / job.frames - mean * mean);
  const float gain = job.scale[c] / std::sqrt(static_cast<float>(variance) + job.eps);
  job.gain[c] = gain;
  job.shift[c] = job.bias[c] - static_cast<float>(mean + origin) * gain;
}

// Passes 1 and 2 of a channel group: each row is normalised, then read again for the Snake's
// range while it is still in the L2 cache.
void Range(void* data, size_t group) {
  Job& job = *static_cast<Job*>(data);
  const int64_t end = std::min(job.channels, static_cast<int64_t>(group + 1) * kChannelGroup);
  Floats low = {}, high = {};  // DynamicQuantizeLinear's range always holds zero
  float low1 = 0.0f, high1 = 0.0f;
  for (int64_t c = static_cast<int64_t>(group) * kChannelGroup; c < end; ++c) {
    Normalise(job, c);
    const float* row = job.x + c * job.frames;
    const float gain = job.gain[c], shift = job.shift[c], out = job.out_scale[c];
    int64_t t = 0;
    for (; t + kWidth <= job.frames; t += kWidth) {
      const Floats y = Snake(Load(row + t), gain, shift, out, job.c1, job.c2);
      low = y < low ? y : low;
      high = y > high ? y : high;
    }
    for (; t < job.frames; ++t) {
      const float y = Snake(row[t], gain, shift, out, job.c1, job.c2);
      low1 = std::min(low1, y);
      high1 = std::max(high1, y);
    }
  }
  for (int64_t l = 0; l < kWidth; ++l) {
    low1 = std::min(low1, low[l]);
    high1 = std::max(high1, high[l]);
  }
  job.low[group] = low1;
  job.high[group] = high1;
}

// One channel's Snake over a tile's frames, into y.
inline void SnakeRow(const Job& job, int64_t c, int64_t t0, int64_t span, float* y) {
  const float* row = job.x + c * job.frames + t0;
  const float gain = job.gain[c], shift = job.shift[c], out = job.out_scale[c];
  int64_t t = 0;
  for (; t + kWidth <= span; t += kWidth) {
    const Floats v = Snake(Load(row + t), gain, shift, out, job.c1, job.c2);
    std::memcpy(y + t, &v, sizeof v);
  }
  for (; t < span; ++t) y[t] = Snake(row[t], gain, shift, out, job.c1, job.c2);
}

// Pass 3a: one channel group's levels, channel-major into the scratch rows (sequential reads and
// writes: read in tiles across all channels instead, the rows' 1 KB runs defeat the prefetcher
// and the pass took three times as long).
void Quantize(void* data, size_t group) {
  Job& job = *static_cast<Job*>(data);
  const int64_t end = std::min(job.channels, static_cast<int64_t>(group + 1) * kChannelGroup);
  alignas(32) float y[kTimeTile];
  for (int64_t c = static_cast<int64_t>(group) * kChannelGroup; c < end; ++c) {
    uint8_t* levels = job.levels + c * job.frames;
    for (int64_t t0 = 0; t0 < job.frames; t0 += kTimeTile) {
      const int64_t span = std::min(kTimeTile, job.frames - t0);
      SnakeRow(job, c, t0, span, y);
      for (int64_t t = 0; t < span; ++t) {  // the compiler vectorises this one itself
        const float level = std::nearbyint(y[t] / job.step) + job.zero;
        levels[t0 + t] = static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, level)));
      }
    }
  }
}

// A 16 x 16 block of bytes transposed: out[i * out_stride + j] = in[j * in_stride + i].
inline void Transpose16(const uint8_t* in, int64_t in_stride, uint8_t* out, int64_t out_stride) {
#if defined(__SSE2__)
  // Four rounds of interleaving (bytes, pairs, quads, halves), as a 16 x 16 byte transpose is
  // done with SSE2; about ten times the speed of moving bytes one at a time.
  __m128i r[16], s[16];
  for (int i = 0; i < 16; ++i) {
    r[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i * in_stride));
  }
  for (int i = 0; i < 8; ++i) {  // s[h*8 + i]: rows 2i, 2i+1; columns 8h .. 8h+7
    s[i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
    s[i + 8] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // r[h*8 + 2i + k]: rows 4i .. 4i+3; columns 8h + 4k ..
    for (int i = 0; i < 4; ++i) {
      r[h * 8 + 2 * i] = _mm_unpacklo_epi16(s[h * 8 + 2 * i], s[h * 8 + 2 * i + 1]);
      r[h * 8 + 2 * i + 1] = _mm_unpackhi_epi16(s[h * 8 + 2 * i], s[h * 8 + 2 * i + 1]);
    }
  }
  for (int h = 0; h < 2; ++h) {  // s[m*8 + h*4 + k*2 + p]: rows 8m ..; columns 8h + 4k + 2p ..
    for (int k = 0; k < 2; ++k) {
      for (int m = 0; m < 2; ++m) {
        const __m128i x = r[h * 8 + 4 * m + k], y = r[h * 8 + 4 * m + 2 + k];
        s[m * 8 + h * 4 + k * 2] = _mm_unpacklo_epi32(x, y);
        s[m * 8 + h * 4 + k * 2 + 1] = _mm_unpackhi_epi32(x, y);
      }
    }
  }
  for (int c = 0; c < 8; ++c) {  // column 2c and 2c+1, all sixteen rows
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * c * out_stride),
                     _mm_unpacklo_epi64(s[c], s[8 + c]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (2 * c + 1) * out_stride),
                     _mm_unpackhi_epi64(s[c], s[8 + c]));
  }
#else
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) out[i * out_stride + j] = in[j * in_stride + i];
  }
#endif
}

// Pass 3b: the levels time-major, a tile of kSquare frames at a time.
void Transpose(void* data, size_t tile) {
  Job& job = *static_cast<Job*>(data);
  const int64_t t0 = static_cast<int64_t>(tile) * kSquare;
  const int64_t span = std::min(kSquare, job.frames - t0);
  for (int64_t c0 = 0; c0 < job.channels; c0 += 16) {
    uint8_t* out = job.q + (job.left + t0) * job.channels + c0;
    const uint8_t* in = job.levels + c0 * job.frames + t0;
    const int64_t width = std::min<int64_t>(16, job.channels - c0);
    int64_t t = 0;
    for (; width == 16 && t + 16 <= span; t += 16) {
      Transpose16(in + t, job.frames, out + t * job.channels, job.channels);
    }
    for (; t < span; ++t) {  // the tile's last frames, or a last group of under 16 channels
      for (int64_t j = 0; j < width; ++j) out[t * job.channels + j] = in[j * job.frames + t];
    }
  }
}

void Run(OrtKernelContext* context, const Ort::Custom::Tensor<float>& x,
         const Ort::Custom::Tensor<float>& scale, const Ort::Custom::Tensor<float>& bias,
         const Ort::Custom::Tensor<float>& out_scale, const Ort::Custom::Tensor<float>& params,
         const Ort::Custom::Tensor<int64_t>& pads, Ort::Custom::Tensor<uint8_t>& q,
         Ort::Custom::Tensor<float>& q_scale, Ort::Custom::Tensor<uint8_t>& q_zero) {
  const auto& shape = x.Shape();
  if (shape.size() != 3 || shape[0] != 1 || scale.NumberOfElement() != shape[1] ||
      bias.NumberOfElement() != shape[1] || out_scale.NumberOfElement() != shape[1] ||
      params.NumberOfElement() != 3 || pads.NumberOfElement() != 2) {
    throw std::invalid_argument("SnakeQuantize: expects x [1, C, T], scale, bias and out_scale "
                                "[C], params [3], pads [2]");
  }
  Job job{};
  job.x = x.Data();
  job.scale = scale.Data();
  job.bias = bias.Data();
  job.out_scale = out_scale.Data();
  job.eps = params.Data()[0];
  job.c1 = params.Data()[1];
  job.c2 = params.Data()[2];
  job.channels = shape[1];
  job.frames = shape[2];
  job.left = pads.Data()[0];
  const int64_t right = pads.Data()[1];
  if (job.frames < 1 || job.left < 0 || right < 0) {
    throw std::invalid_argument("SnakeQuantize: needs at least one frame and pads >= 0");
  }
  const int64_t groups = (job.channels + kChannelGroup - 1) / kChannelGroup;
  job.gain.resize(job.channels);
  job.shift.resize(job.channels);
  job.low.assign(groups, 0.0f);
  job.high.assign(groups, 0.0f);
  Ort::KernelContext kernel(context);
  kernel.ParallelFor(Range, groups, 0, &job);
  const float low = *std::min_element(job.low.begin(), job.low.end());
  const float high = *std::max_element(job.high.begin(), job.high.end());
  job.step = high == low ? 1.0f : (high - low) / 255.0f;
  job.zero = std::nearbyint(std::min(255.0f, std::max(0.0f, -low / job.step)));
  const int64_t rows = job.left + job.frames + right;
  job.q = q.Allocate({1, rows, job.channels});
  *q_scale.Allocate({}) = job.step;
  *q_zero.Allocate({}) = static_cast<uint8_t>(job.zero);
  const uint8_t fill = static_cast<uint8_t>(job.zero);  // padding: the activation zero point
  std::fill(job.q, job.q + job.left * job.channels, fill);
  std::fill(job.q + (job.left + job.frames) * job.channels, job.q + rows * job.channels, fill);
  // The scratch rows come from the session's CPU allocator (its arena): the 48 calls of a run
  // reuse one block, and the arena's shrinking after the run gives it back.
  const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  OrtAllocator* allocator = kernel.GetAllocator(*cpu);
  const auto release = [allocator](void* block) { allocator->Free(allocator, block); };
  std::unique_ptr<void, decltype(release)> levels(
      allocator->Alloc(allocator, job.channels * job.frames), release);
  job.levels = static_cast<uint8_t*>(levels.get());
  kernel.ParallelFor(Quantize, groups, 0, &job);
  kernel.ParallelFor(Transpose, (job.frames + kSquare - 1) / kSquare, 0, &job);
}

// The op: inputs x [1, C, T], scale, bias, out_scale [C], params [eps, c1, c2], pads [left,
// right]; outputs the levels [1, left + T + right, C], their scale and zero point. Errors come
// back as a status: an exception must not cross ONNX Runtime's C API.
Ort::Status SnakeQuantize(OrtKernelContext* context, const Ort::Custom::Tensor<float>& x,
                          const Ort::Custom::Tensor<float>& scale,
                          const Ort::Custom::Tensor<float>& bias,
                          const Ort::Custom::Tensor<float>& out_scale,
                          const Ort::Custom::Tensor<float>& params,
                          const Ort::Custom::Tensor<int64_t>& pads,
                          Ort::Custom::Tensor<uint8_t>& q, Ort::Custom::Tensor<float>& q_scale,
                          Ort::Custom::Tensor<uint8_t>& q_zero) {
  try {
    Run(context, x, scale, bias, out_scale, params, pads, q, q_scale, q_zero);
  } catch (const std::invalid_argument& error) {
    return Ort::Status(error.what(), ORT_INVALID_ARGUMENT);
  } catch (const Ort::Exception& error) {
    return Ort::Status(error);
  } catch (const std::exception& error) {
    return Ort::Status(error);
  }
  return Ort::Status(nullptr);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
  // One domain and op for the library's lifetime: ONNX Runtime keeps pointers to both.
  static Ort::CustomOpDomain domain{"kokoro_lab"};
  static std::unique_ptr<Ort::Custom::OrtLiteCustomOp> op{
      Ort::Custom::CreateLiteCustomOp("SnakeQuantize", "CPUExecutionProvider", SnakeQuantize)};
  static const bool added = (domain.Add(op.get()), true);
  (void)added;
  try {
    Ort::UnownedSessionOptions(options).Add(domain);
  } catch (const Ort::Exception& error) {
    return Ort::Status(error).release();
  }
  return nullptr;
}
