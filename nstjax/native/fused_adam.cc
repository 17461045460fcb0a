// Adam over many float32 arrays in one pass each, called from XLA:CPU through the FFI.
//
// Why: XLA:CPU has no multi-output fusion, so optax.adam's update of one array is three loops (the first
// moment, the second moment, the parameter recomputing the first) and a copy of the donated first moment:
// 13 passes over the array's size where Adam needs 7 (read p, m, v, g; write p, m, v). pix2pix's 57 M
// parameters took ~87 ms an update on a 2-core Xeon (docs/benchmarks.md, "GAN steps: one pass of Adam").
//
//   scalars [9] float32: step (-learning rate), c1 = 1 - b1^t, c2 = 1 - b2^t, 1 - b1, b1, 1 - b2, b2, eps,
//                        eps_root (as optax rounds them to float32)
//   then per array i (n arrays, any shapes): p_i, m_i, v_i, g_i, float32, all of one size
//   results per array i: p_i', m_i', v_i' (XLA aliases them to p_i, m_i, v_i)
//
// Each element: optax.scale_by_adam, then scale_by_learning_rate and apply_updates, in optax's order of
// operations (built without contraction into fused multiply-adds, so every rounding is optax's):
//   m' = (1 - b1) g + b1 m;  v' = (1 - b2) g^2 + b2 v;  p' = p + step ((m' / c1) / (sqrt(v' / c2 + eps_root) + eps))
// The arrays' elements are split evenly over one thread per usable core. Built with -fno-math-errno (sqrt of a negative
// needs no errno here; without it the loop is not vectorised) and -ffp-contract=off.
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Constants {
  float step, c1, c2, one_minus_b1, b1, one_minus_b2, b2, eps, eps_root;
};

// In place: XLA hands each result the buffer of its operand (input_output_aliases). The four arrays are
// distinct, which lets the compiler vectorise the loop.
void Step(float* __restrict p, float* __restrict m, float* __restrict v, const float* __restrict g, int64_t n,
          const Constants& c) {
  for (int64_t j = 0; j < n; ++j) {
    const float m1 = c.one_minus_b1 * g[j] + c.b1 * m[j];
    const float v1 = c.one_minus_b2 * (g[j] * g[j]) + c.b2 * v[j];
    const float update = (m1 / c.c1) / (std::sqrt(v1 / c.c2 + c.eps_root) + c.eps);
    p[j] = p[j] + c.step * update;
    m[j] = m1;
    v[j] = v1;
  }
}

int64_t UsableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return std::max(1u, std::thread::hardware_concurrency());
}

struct Arrays {
  float* p;
  float* m;
  float* v;
  const float* g;
  int64_t size;
};

ffi::Error Adam(ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  if (scalars.element_count() != 9) return ffi::Error::InvalidArgument("fused Adam: 9 scalars expected");
  if (args.size() % 4 != 0 || rets.size() * 4 != args.size() * 3) {
    return ffi::Error::InvalidArgument("fused Adam: 4 operands and 3 results per array expected");
  }
  std::vector<Arrays> arrays;
  std::vector<int64_t> starts{0};  // each array's first element in the concatenated index space
  for (size_t i = 0; i < args.size() / 4; ++i) {
    const float* in[4];
    int64_t size = -1;
    for (int k = 0; k < 4; ++k) {
      auto buffer = args.get<ffi::Buffer<ffi::F32>>(4 * i + k);
      if (!buffer.has_value()) return buffer.error();
      if (size >= 0 && static_cast<int64_t>(buffer->element_count()) != size) {
        return ffi::Error::InvalidArgument("fused Adam: an array's parameter, moments and gradient differ in size");
      }
      size = buffer->element_count();
      in[k] = buffer->typed_data();
    }
    float* out[3];
    for (int k = 0; k < 3; ++k) {
      auto buffer = rets.get<ffi::Buffer<ffi::F32>>(3 * i + k);
      if (!buffer.has_value()) return buffer.error();
      out[k] = (*buffer)->typed_data();
      if (out[k] != in[k]) std::memcpy(out[k], in[k], size * sizeof(float));  // not aliased: step a copy
    }
    arrays.push_back({out[0], out[1], out[2], in[3], size});
    starts.push_back(starts.back() + size);
  }
  const float* s = scalars.typed_data();
  const Constants c{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]};
  const int64_t total = starts.back();

  // Threads of our own, started per call and joined: an OpenMP team would linger, spinning, beside XLA's
  // threads (and a PyTorch in the same process, whose 2-thread steps ran 1.3x slower beside it).
  auto run = [&](int64_t id, int64_t threads) {
    const int64_t begin = total * id / threads, end = total * (id + 1) / threads;
    for (size_t a = 0; a < arrays.size(); ++a) {
      const int64_t lo = begin > starts[a] ? begin : starts[a], hi = end < starts[a + 1] ? end : starts[a + 1];
      if (lo >= hi) continue;
      const Arrays& x = arrays[a];
      const int64_t off = lo - starts[a];
      Step(x.p + off, x.m + off, x.v + off, x.g + off, hi - lo, c);
    }
  };
  // One thread per core this process may use, each with at least ~1 M elements (smaller updates stay on one).
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(UsableCores(), total >> 20));
  std::vector<std::thread> workers;
  for (int64_t id = 1; id < threads; ++id) workers.emplace_back(run, id, threads);
  run(0, threads);
  for (auto& worker : workers) worker.join();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(NstjaxFusedAdam, Adam,
                              ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::F32>>().RemainingArgs().RemainingRets());
