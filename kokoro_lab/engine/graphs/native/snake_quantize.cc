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
// kokoro_lab.SnakeQuantizeTimeMajor computes the same from x [1, T, C], the time-major output of
// the GEMM before it, so that GEMM's Transpose back to channel-major is skipped (and the levels
// need no transpose either): statistics, range and levels in three passes over blocks of frames.
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
#include <string>
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
  std::vector<float> sums, squares;  // time-major form: per block of frames, per channel
};

// Per channel: u = x * gain + shift (the norm), y = (u + (w*c2 + c1)*w) * out with w = f^2,
// f = u - round(u). One template for a vector and a scalar (a row's last few frames).
template <typename T>
inline T Round(T v) { return (v + kRoundingShift) - kRoundingShift; }

template <typename T, typename P>
inline T Snake(T x, P gain, P shift, P out, float c1, float c2) {
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

// The Snake's range over one task's values, kept in vectors (and scalars for the tails) until
// the task's end. DynamicQuantizeLinear's range always holds zero, hence the zero start.
struct RangeOf {
  Floats low = {}, high = {};
  float low1 = 0.0f, high1 = 0.0f;

  void Add(const Floats& y) {
    low = y < low ? y : low;
    high = y > high ? y : high;
  }
  void Add(float y) {
    low1 = std::min(low1, y);
    high1 = std::max(high1, y);
  }
  // Into the job's per-task slots.
  void Store(Job& job, size_t task) {
    for (int64_t l = 0; l < kWidth; ++l) {
      low1 = std::min(low1, low[l]);
      high1 = std::max(high1, high[l]);
    }
    job.low[task] = low1;
    job.high[task] = high1;
  }
};

// A channel's norm as gain and shift, from the sums over time of d = x - origin and of d^2.
void SetNorm(Job& job, int64_t c, double sum, double square, float origin) {
  const double mean = sum / job.frames;
  const double variance = std::max(0.0, square / job.frames - mean * mean);
  const float gain = job.scale[c] / std::sqrt(static_cast<float>(variance) + job.eps);
  job.gain[c] = gain;
  job.shift[c] = job.bias[c] - static_cast<float>(mean + origin) * gain;
}

// n Snake values as DynamicQuantizeLinear's levels (step and zero by value: byte stores may
// alias anything, and fields read through a reference would be reloaded after each one, which
// stops the compiler vectorising this loop).
inline void Levels(const float* y, int64_t n, float step, float zero, uint8_t* levels) {
  for (int64_t i = 0; i < n; ++i) {
    const float level = std::nearbyint(y[i] / step) + zero;
    levels[i] = static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, level)));
  }
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
  SetNorm(job, c, sum, square, origin);
}

// Passes 1 and 2 of a channel group: each row is normalised, then read again for the Snake's
// range while it is still in the L2 cache.
void Range(void* data, size_t group) {
  Job& job = *static_cast<Job*>(data);
  const int64_t end = std::min(job.channels, static_cast<int64_t>(group + 1) * kChannelGroup);
  RangeOf range;
  for (int64_t c = static_cast<int64_t>(group) * kChannelGroup; c < end; ++c) {
    Normalise(job, c);
    const float* row = job.x + c * job.frames;
    const float gain = job.gain[c], shift = job.shift[c], out = job.out_scale[c];
    int64_t t = 0;
    for (; t + kWidth <= job.frames; t += kWidth) {
      range.Add(Snake(Load(row + t), gain, shift, out, job.c1, job.c2));
    }
    for (; t < job.frames; ++t) range.Add(Snake(row[t], gain, shift, out, job.c1, job.c2));
  }
  range.Store(job, group);
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
      Levels(y, span, job.step, job.zero, levels + t0);
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

// The time-major form. Its rows are frames: each task takes kRowBlock of them and works across
// the channels, kWidth at a time (every channel count of the vocoder is a multiple of kWidth;
// other counts take the scalar tail).
constexpr int64_t kRowBlock = 64;

int64_t RowBlocks(const Job& job) { return (job.frames + kRowBlock - 1) / kRowBlock; }

// Pass 1: one block's sums of x - x[0] and of their squares, per channel.
void RowStatistics(void* data, size_t block) {
  Job& job = *static_cast<Job*>(data);
  const int64_t c_all = job.channels, t0 = static_cast<int64_t>(block) * kRowBlock;
  const int64_t t1 = std::min(job.frames, t0 + kRowBlock);
  float* sums = job.sums.data() + block * c_all;
  float* squares = job.squares.data() + block * c_all;
  int64_t c = 0;
  for (; c + kWidth <= c_all; c += kWidth) {
    const Floats origin = Load(job.x + c);
    Floats sum = {}, square = {};
    for (int64_t t = t0; t < t1; ++t) {
      const Floats d = Load(job.x + t * c_all + c) - origin;
      sum += d;
      square += d * d;
    }
    std::memcpy(sums + c, &sum, sizeof sum);
    std::memcpy(squares + c, &square, sizeof square);
  }
  for (; c < c_all; ++c) {
    float sum = 0.0f, square = 0.0f;
    for (int64_t t = t0; t < t1; ++t) {
      const float d = job.x[t * c_all + c] - job.x[c];
      sum += d;
      square += d * d;
    }
    sums[c] = sum;
    squares[c] = square;
  }
}

// The blocks' sums as each channel's gain and shift (as Normalise computes them).
void RowNormalise(Job& job) {
  const int64_t blocks = RowBlocks(job);
  for (int64_t c = 0; c < job.channels; ++c) {
    double sum = 0.0, square = 0.0;
    for (int64_t b = 0; b < blocks; ++b) {
      sum += job.sums[b * job.channels + c];
      square += job.squares[b * job.channels + c];
    }
    SetNorm(job, c, sum, square, job.x[c]);
  }
}

// Pass 2: one block's Snake range.
void RowRange(void* data, size_t block) {
  Job& job = *static_cast<Job*>(data);
  const int64_t t0 = static_cast<int64_t>(block) * kRowBlock;
  const int64_t t1 = std::min(job.frames, t0 + kRowBlock);
  RangeOf range;
  for (int64_t t = t0; t < t1; ++t) {
    const float* row = job.x + t * job.channels;
    int64_t c = 0;
    for (; c + kWidth <= job.channels; c += kWidth) {
      range.Add(Snake(Load(row + c), Load(job.gain.data() + c), Load(job.shift.data() + c),
                      Load(job.out_scale + c), job.c1, job.c2));
    }
    for (; c < job.channels; ++c) {
      range.Add(Snake(row[c], job.gain[c], job.shift[c], job.out_scale[c], job.c1, job.c2));
    }
  }
  range.Store(job, block);
}

// Pass 3: one block's levels, straight into their padded, time-major rows: a frame's Snake into
// y, then its Levels, as Quantize does (the job's fields copied out first, as Levels says why).
void RowQuantize(void* data, size_t block) {
  const Job& job = *static_cast<const Job*>(data);
  const int64_t channels = job.channels, t0 = static_cast<int64_t>(block) * kRowBlock;
  const int64_t t1 = std::min(job.frames, t0 + kRowBlock);
  const float step = job.step, zero = job.zero, c1 = job.c1, c2 = job.c2;
  const float *gain = job.gain.data(), *shift = job.shift.data(), *out = job.out_scale;
  thread_local std::vector<float> frame;  // one per pool thread, reused by its blocks
  frame.resize(channels);
  float* y = frame.data();
  for (int64_t t = t0; t < t1; ++t) {
    const float* row = job.x + t * channels;
    int64_t c = 0;
    for (; c + kWidth <= channels; c += kWidth) {
      const Floats v = Snake(Load(row + c), Load(gain + c), Load(shift + c), Load(out + c), c1, c2);
      std::memcpy(y + c, &v, sizeof v);
    }
    for (; c < channels; ++c) y[c] = Snake(row[c], gain[c], shift[c], out[c], c1, c2);
    Levels(y, channels, step, zero, job.q + (job.left + t) * channels);
  }
}

using Input = Ort::Custom::Tensor<float>;

// The job an op's inputs describe (x [1, C, T], or [1, T, C] time-major), checked.
Job Prepare(bool time_major, const Input& x, const Input& scale, const Input& bias,
            const Input& out_scale, const Input& params,
            const Ort::Custom::Tensor<int64_t>& pads) {
  const char* op = time_major ? "SnakeQuantizeTimeMajor" : "SnakeQuantize";
  const auto& shape = x.Shape();
  const int64_t channels = shape.size() == 3 ? shape[time_major ? 2 : 1] : -1;
  if (shape.size() != 3 || shape[0] != 1 || scale.NumberOfElement() != channels ||
      bias.NumberOfElement() != channels || out_scale.NumberOfElement() != channels ||
      params.NumberOfElement() != 3 || pads.NumberOfElement() != 2) {
    throw std::invalid_argument(std::string(op) + ": expects x " +
                                (time_major ? "[1, T, C]" : "[1, C, T]") +
                                ", scale, bias and out_scale [C], params [3], pads [2]");
  }
  Job job{};
  job.x = x.Data();
  job.scale = scale.Data();
  job.bias = bias.Data();
  job.out_scale = out_scale.Data();
  job.eps = params.Data()[0];
  job.c1 = params.Data()[1];
  job.c2 = params.Data()[2];
  job.channels = channels;
  job.frames = shape[time_major ? 1 : 2];
  job.left = pads.Data()[0];
  if (job.frames < 1 || job.left < 0 || pads.Data()[1] < 0) {
    throw std::invalid_argument(std::string(op) + ": needs at least one frame and pads >= 0");
  }
  job.gain.resize(job.channels);
  job.shift.resize(job.channels);
  return job;
}

// The quantizer's step and zero point from the tasks' ranges; the padded output, filled with
// the zero point where it pads.
void Output(Job& job, int64_t right, Ort::Custom::Tensor<uint8_t>& q,
            Ort::Custom::Tensor<float>& q_scale, Ort::Custom::Tensor<uint8_t>& q_zero) {
  const float low = *std::min_element(job.low.begin(), job.low.end());
  const float high = *std::max_element(job.high.begin(), job.high.end());
  job.step = high == low ? 1.0f : (high - low) / 255.0f;
  job.zero = std::nearbyint(std::min(255.0f, std::max(0.0f, -low / job.step)));
  const int64_t rows = job.left + job.frames + right;
  job.q = q.Allocate({1, rows, job.channels});
  *q_scale.Allocate({}) = job.step;
  *q_zero.Allocate({}) = static_cast<uint8_t>(job.zero);
  const uint8_t fill = static_cast<uint8_t>(job.zero);
  std::fill(job.q, job.q + job.left * job.channels, fill);
  std::fill(job.q + (job.left + job.frames) * job.channels, job.q + rows * job.channels, fill);
}

void RunChannelMajor(Ort::KernelContext& kernel, Job& job, int64_t right,
                     Ort::Custom::Tensor<uint8_t>& q, Ort::Custom::Tensor<float>& q_scale,
                     Ort::Custom::Tensor<uint8_t>& q_zero) {
  const int64_t groups = (job.channels + kChannelGroup - 1) / kChannelGroup;
  job.low.assign(groups, 0.0f);
  job.high.assign(groups, 0.0f);
  kernel.ParallelFor(Range, groups, 0, &job);
  Output(job, right, q, q_scale, q_zero);
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

void RunTimeMajor(Ort::KernelContext& kernel, Job& job, int64_t right,
                  Ort::Custom::Tensor<uint8_t>& q, Ort::Custom::Tensor<float>& q_scale,
                  Ort::Custom::Tensor<uint8_t>& q_zero) {
  const int64_t blocks = RowBlocks(job);
  job.low.assign(blocks, 0.0f);
  job.high.assign(blocks, 0.0f);
  job.sums.resize(blocks * job.channels);
  job.squares.resize(blocks * job.channels);
  kernel.ParallelFor(RowStatistics, blocks, 0, &job);
  RowNormalise(job);
  kernel.ParallelFor(RowRange, blocks, 0, &job);
  Output(job, right, q, q_scale, q_zero);
  kernel.ParallelFor(RowQuantize, blocks, 0, &job);
}

// Run, with its errors as a status: an exception must not cross ONNX Runtime's C API.
template <bool kTimeMajor>
Ort::Status Op(OrtKernelContext* context, const Input& x, const Input& scale, const Input& bias,
               const Input& out_scale, const Input& params,
               const Ort::Custom::Tensor<int64_t>& pads, Ort::Custom::Tensor<uint8_t>& q,
               Ort::Custom::Tensor<float>& q_scale, Ort::Custom::Tensor<uint8_t>& q_zero) {
  try {
    Job job = Prepare(kTimeMajor, x, scale, bias, out_scale, params, pads);
    Ort::KernelContext kernel(context);
    (kTimeMajor ? RunTimeMajor : RunChannelMajor)(kernel, job, pads.Data()[1], q, q_scale,
                                                   q_zero);
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

// The ops: inputs x ([1, C, T] for SnakeQuantize, [1, T, C] for SnakeQuantizeTimeMajor), scale,
// bias, out_scale [C], params [eps, c1, c2], pads [left, right]; outputs the levels
// [1, left + T + right, C], their scale and zero point.
extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
  // One domain and its ops for the library's lifetime: ONNX Runtime keeps pointers to them.
  static Ort::CustomOpDomain domain{"kokoro_lab"};
  static std::unique_ptr<Ort::Custom::OrtLiteCustomOp> channel_major{
      Ort::Custom::CreateLiteCustomOp("SnakeQuantize", "CPUExecutionProvider", Op<false>)};
  static std::unique_ptr<Ort::Custom::OrtLiteCustomOp> time_major{
      Ort::Custom::CreateLiteCustomOp("SnakeQuantizeTimeMajor", "CPUExecutionProvider",
                                      Op<true>)};
  static const bool added = (domain.Add(channel_major.get()), domain.Add(time_major.get()), true);
  (void)added;
  try {
    Ort::UnownedSessionOptions(options).Add(domain);
  } catch (const Ort::Exception& error) {
    return Ort::Status(error).release();
  }
  return nullptr;
}
