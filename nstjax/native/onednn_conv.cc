// nstjax's one native kernel: a 2-D convolution computed by oneDNN, called from XLA:CPU through the FFI.
//
// Why: XLA:CPU has no bfloat16 convolution (it converts to float32), while oneDNN's runs on the CPU's
// bfloat16 units (AMX, AVX512-BF16): a 64->64 3x3 layer at 256x256 px takes it ~2 ms against ~16 ms for
// XLA's float32 one on a 2-core Xeon (docs/benchmarks.md, "bfloat16 through oneDNN").
//
//   x      [N, H, W, Cin]     NHWC, float32 or bfloat16
//   kernel [kh, kw, Cin, Cout] HWIO, float32 or bfloat16
//   y      [N, Ho, Wo, Cout]  NHWC, float32 or bfloat16 (the result buffer's type); accumulated in float32
//   attributes: stride (both axes) and the zero padding of each side, in pixels.
//
// oneDNN picks its kernel for the CPU it runs on (AMX, AVX512-BF16, AVX-512, AVX2, ...). Primitives are
// built once per shape and kept; the kernel is reordered into the primitive's layout on every call (XLA
// hands us plain arrays; a 512->512 kernel is 4.7 MB in bfloat16, ~0.7 ms). Safe to call from several
// threads at once (the scratch memory is per call).
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::data_type onednn_type(ffi::DataType type) {
  switch (type) {
    case ffi::DataType::F32:
      return memory::data_type::f32;
    case ffi::DataType::BF16:
      return memory::data_type::bf16;
    default:
      return memory::data_type::undef;
  }
}

struct Primitive {
  dnnl::convolution_forward::primitive_desc desc;
  dnnl::convolution_forward conv;
  memory::desc given_kernel;  // HWIO, as XLA hands it over
  bool reorder_kernel = false;
  dnnl::reorder kernel_reorder;
};

std::mutex primitives_mutex;
std::unordered_map<std::string, std::shared_ptr<const Primitive>> primitives;

std::shared_ptr<const Primitive> primitive_for(const memory::dims& src, const memory::dims& kernel,
                                               const memory::dims& dst, memory::data_type src_type,
                                               memory::data_type kernel_type, memory::data_type dst_type,
                                               int64_t stride, const memory::dims& pad_begin,
                                               const memory::dims& pad_end) {
  std::string key;
  for (const memory::dims* dims : {&src, &kernel, &dst, &pad_begin, &pad_end})
    for (auto d : *dims) key += std::to_string(d) + ",";
  key += std::to_string(stride) + ":" + std::to_string(static_cast<int>(src_type)) + "," +
         std::to_string(static_cast<int>(kernel_type)) + "," + std::to_string(static_cast<int>(dst_type));
  {
    std::lock_guard<std::mutex> lock(primitives_mutex);
    auto found = primitives.find(key);
    if (found != primitives.end()) return found->second;
  }
  auto& engine = cpu_engine();
  auto made = std::make_shared<Primitive>();
  // Scratch memory is passed in at each call: XLA may run the same primitive on several threads at once
  // (one per device of a sharded batch), and a primitive's own scratchpad is not safe to share.
  dnnl::primitive_attr attributes;
  attributes.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  made->desc = dnnl::convolution_forward::primitive_desc(
      engine, dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
      memory::desc(src, src_type, memory::format_tag::nhwc),
      memory::desc(kernel, kernel_type, memory::format_tag::any),  // the layout its kernel wants
      memory::desc(dst, dst_type, memory::format_tag::nhwc), {stride, stride}, pad_begin, pad_end, attributes);
  made->conv = dnnl::convolution_forward(made->desc);
  made->given_kernel = memory::desc(kernel, kernel_type, memory::format_tag::hwio);
  made->reorder_kernel = made->desc.weights_desc() != made->given_kernel;
  if (made->reorder_kernel)
    made->kernel_reorder =
        dnnl::reorder(dnnl::reorder::primitive_desc(engine, made->given_kernel, engine, made->desc.weights_desc()));
  std::lock_guard<std::mutex> lock(primitives_mutex);
  return primitives.emplace(key, std::move(made)).first->second;
}

ffi::Error Conv2d(ffi::AnyBuffer x, ffi::AnyBuffer kernel, ffi::Result<ffi::AnyBuffer> y, int64_t stride,
                  int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right) {
  auto xd = x.dimensions();
  auto kd = kernel.dimensions();
  auto yd = y->dimensions();
  if (xd.size() != 4 || kd.size() != 4 || yd.size() != 4)
    return ffi::Error::InvalidArgument("onednn_conv2d: expects NHWC input and output, HWIO kernel");
  if (kd[2] != xd[3] || kd[3] != yd[3] || xd[0] != yd[0] || stride < 1)
    return ffi::Error::InvalidArgument("onednn_conv2d: input, kernel and output shapes disagree");
  auto x_type = onednn_type(x.element_type());
  auto k_type = onednn_type(kernel.element_type());
  auto y_type = onednn_type(y->element_type());
  if (x_type == memory::data_type::undef || k_type == memory::data_type::undef ||
      y_type == memory::data_type::undef)
    return ffi::Error::InvalidArgument("onednn_conv2d: float32 and bfloat16 only");
  try {
    auto p = primitive_for({xd[0], xd[3], xd[1], xd[2]}, {kd[3], kd[2], kd[0], kd[1]},
                           {yd[0], yd[3], yd[1], yd[2]}, x_type, k_type, y_type, stride, {pad_top, pad_left},
                           {pad_bottom, pad_right});
    auto& engine = cpu_engine();
    dnnl::stream stream(engine);
    memory given_kernel(p->given_kernel, engine, kernel.untyped_data());
    memory kernel_memory = given_kernel;
    if (p->reorder_kernel) {
      kernel_memory = memory(p->desc.weights_desc(), engine);
      p->kernel_reorder.execute(stream, given_kernel, kernel_memory);
    }
    p->conv.execute(stream, {{DNNL_ARG_SRC, memory(p->desc.src_desc(), engine, x.untyped_data())},
                             {DNNL_ARG_WEIGHTS, kernel_memory},
                             {DNNL_ARG_DST, memory(p->desc.dst_desc(), engine, y->untyped_data())},
                             {DNNL_ARG_SCRATCHPAD, memory(p->desc.scratchpad_desc(), engine)}});
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn_conv2d: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(NstjaxOnednnConv2d, Conv2d,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()  // x
                                  .Arg<ffi::AnyBuffer>()  // kernel
                                  .Ret<ffi::AnyBuffer>()  // y
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_right"));
