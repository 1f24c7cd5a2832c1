// The pruning layers' attention in int8 (the kernel: ``pruning_attention_int8.h``) as a torch extension, for the
// ``qla_sdk::pruning_attention`` operation of Inductor graphs (``runtime/inductor_attention.py``), on ATen's threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <string>
#include <tuple>

#include "pruning_attention_int8.h"

namespace {

// The instructions `isa` (auto | amx_int8 | avx512_vnni | portable) runs on for a head of `head_dim` channels.
qla::Isa choose_isa(const std::string& isa, int64_t head_dim) {
  TORCH_CHECK(qla::known_isa(isa), "isa is '", isa, "'; use ", qla::kIsaChoices);
  const std::string refusal = qla::isa_refusal(isa, qla::round_up(head_dim, 16));
  TORCH_CHECK(refusal.empty(), refusal);
  return qla::resolve_isa(isa, qla::round_up(head_dim, 16));
}

}  // namespace

// q, k, v: (batch, len, heads, head_dim) float32 views with a contiguous head_dim and one set of strides; scale
// multiplies the scores. mask: (batch, len) float32, 1 for real tokens, or None. Returns the context (batch, len,
// heads, head_dim), contiguous, and the significance (batch, len): the probabilities each token receives, summed
// over heads and real queries.
std::tuple<at::Tensor, at::Tensor> attention_int8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  double scale, const c10::optional<at::Tensor>& mask,
                                                  const std::string& isa) {
  TORCH_CHECK(q.dim() == 4 && q.sizes() == k.sizes() && q.sizes() == v.sizes(),
              "q, k, v must share one (batch, len, heads, head_dim) shape");
  for (const at::Tensor* t : {&q, &k, &v}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat, "q, k, v must be float32 CPU tensors");
    TORCH_CHECK(t->stride(3) == 1, "q, k, v need a contiguous head_dim");
  }
  TORCH_CHECK(k.strides() == q.strides() && v.strides() == q.strides(), "q, k, v must share their strides");
  const int64_t batch = q.size(0), n = q.size(1), heads = q.size(2), head_dim = q.size(3);
  TORCH_CHECK(head_dim <= 256, "head size ", head_dim, " is above the int8 kernel's 256");
  TORCH_CHECK(n <= qla::kMaxLength, "sequence length ", n, " is above the int8 kernel's ", qla::kMaxLength, " tokens");
  const qla::Isa chosen = choose_isa(isa, head_dim);
  at::Tensor mask_values;
  if (mask.has_value()) {
    mask_values = mask->contiguous();
    TORCH_CHECK(mask_values.scalar_type() == at::kFloat && mask_values.dim() == 2 && mask_values.size(0) == batch &&
                    mask_values.size(1) == n,
                "mask must be a (batch, len) float32 tensor");
  }
  const float* mp = mask.has_value() ? mask_values.data_ptr<float>() : nullptr;
  auto context = at::empty({batch, n, heads, head_dim}, q.options());
  // One significance row per (batch, head), summed over heads after: tasks never write the same memory.
  auto per_head = at::empty({batch, heads, n}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* out = context.data_ptr<float>();
  float* sig = per_head.data_ptr<float>();
  const int64_t s0 = q.stride(0), s1 = q.stride(1), s2 = q.stride(2), hidden = heads * head_dim;
  const float scale_f = static_cast<float>(scale);
  at::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / heads, h = task % heads, offset = b * s0 + h * s2;
      qla::attend_head(chosen, qp + offset, kp + offset, vp + offset, mp == nullptr ? nullptr : mp + b * n, n,
                       head_dim, s1, scale_f, out + b * n * hidden + h * head_dim, hidden, sig + task * n);
    }
  });
  return {context, per_head.sum(1)};
}

// The matrix instructions isa=auto runs on in this process (for a head of at most 64 channels).
std::string int8_attention_isa() { return qla::auto_isa_name(); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attention_int8", &attention_int8, "Fused int8 self-attention returning (context, significance)",
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("scale"), py::arg("mask") = py::none(),
        py::arg("isa") = "auto");
  m.def("isa", &int8_attention_isa, "The matrix instructions isa=auto runs on here");
}
