// Kernels for the pruning layers of the eager runtime: self-attention that also returns each token's
// significance, and the choice of the tokens that stay.
//
// Attention: one (batch, head) pair per task: scores = q k^T go into a per-thread (len x len) buffer (590 KB at 384, so it
// stays in the core's L2), one pass per row turns them into probabilities and adds them into the keys' column
// sums, and context = P v reads them back from L2. ATen's path (bmm, softmax, bmm, then a product for the
// significance) makes four passes over all heads' probabilities: 7 MB at 384, more than L2 holds.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <tuple>
#include <vector>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

// Fortran BLAS, exported by libtorch_cpu (MKL): column-major, 32-bit sizes.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

namespace {

// Row-major C (rows x cols, ldc) = alpha * A (rows x inner, lda) * B^T or B, through column-major sgemm on the
// transposes: C^T = B'^T A^T.
void gemm_rowmajor(bool b_transposed, int rows, int cols, int inner, float alpha, const float* a, int lda,
                   const float* b, int ldb, float* c, int ldc) {
  const char ta = b_transposed ? 'T' : 'N', tb = 'N';
  const float beta = 0.f;
  sgemm_(&ta, &tb, &cols, &rows, &inner, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

// Denormals run in microcode on x86. torch.set_flush_denormal sets the calling thread only, so each task sets
// flush-to-zero and denormals-are-zero itself and restores the thread's mode after.
struct FlushDenormals {
#if defined(__x86_64__)
  unsigned int saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// In place: row <- softmax(row) over the keys whose key_mask is non-zero (the others get exactly 0, as the
// reference's float32.min bias gives them); column_sums += row unless column_sums is null (a padding query's row).
void softmax_masked(float* row, float* column_sums, const float* key_mask, int64_t len) {
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < len; ++j)
    if (key_mask[j] != 0.f) top = row[j] > top ? row[j] : top;
  if (top == -std::numeric_limits<float>::infinity()) top = 0.f;  // no real key: the reference's softmax of equal
  float total = 0.f;                                                // biases, uniform over every key
  const bool any_real = std::any_of(key_mask, key_mask + len, [](float m) { return m != 0.f; });
  for (int64_t j = 0; j < len; ++j) {
    const float shifted = row[j] - top;
    const float e = (key_mask[j] != 0.f || !any_real) ? std::exp(shifted > -87.f ? shifted : -87.f) : 0.f;
    row[j] = e;
    total += e;
  }
  const float inverse = 1.f / total;
  for (int64_t j = 0; j < len; ++j) row[j] *= inverse;
  if (column_sums != nullptr)
    for (int64_t j = 0; j < len; ++j) column_sums[j] += row[j];
}

// In place: row <- softmax(row); column_sums += row.
void softmax_accumulate(float* row, float* column_sums, int64_t len) {
  // A ternary, not std::max: with std::max GCC 12 compiled this loop so that the whole kernel took 2.7 instead
  // of 1.2 ms at length 384.
  float top = row[0];
#pragma omp simd reduction(max : top)
  for (int64_t j = 0; j < len; ++j) top = row[j] > top ? row[j] : top;
  float total = 0.f;
  // Clamped at -87 (exp gives 1.6e-38, nothing next to the row's maximum, which gives 1): glibc's vector expf
  // takes a scalar slow path for lanes that underflow, and a trained model's peaked attention has many.
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < len; ++j) {
    const float shifted = row[j] - top;
    const float e = std::exp(shifted > -87.f ? shifted : -87.f);
    row[j] = e;
    total += e;
  }
  const float inverse = 1.f / total;
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) {
    const float p = row[j] * inverse;
    row[j] = p;
    column_sums[j] += p;
  }
}

}  // namespace

// q, k, v: (batch, len, heads, head_dim) float32 with contiguous head_dim (views of the projections). Returns the
// context (batch, len, heads, head_dim) and the significance (batch, len): the attention each token receives,
// summed over heads and queries.
// With a mask (batch, len) float32, 1 for real tokens: padding keys get no attention and only real queries count
// in the significance, as in the reference encoder; the context of padding queries is still computed.
std::tuple<at::Tensor, at::Tensor> attention_with_significance(const at::Tensor& q, const at::Tensor& k,
                                                              const at::Tensor& v, double scale,
                                                              const c10::optional<at::Tensor>& mask) {
  TORCH_CHECK(q.dim() == 4 && q.sizes() == k.sizes() && q.sizes() == v.sizes(),
              "q, k, v must share one (batch, len, heads, head_dim) shape");
  for (const at::Tensor* t : {&q, &k, &v}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat, "q, k, v must be float32 CPU tensors");
    TORCH_CHECK(t->stride(3) == 1, "q, k, v need a contiguous head_dim");
  }
  const int64_t batch = q.size(0), len = q.size(1), heads = q.size(2), head_dim = q.size(3);
  at::Tensor mask_values;
  if (mask.has_value()) {
    mask_values = mask->contiguous();
    TORCH_CHECK(mask_values.scalar_type() == at::kFloat && mask_values.dim() == 2 && mask_values.size(0) == batch &&
                    mask_values.size(1) == len,
                "mask must be a (batch, len) float32 tensor");
  }
  const float* mp = mask.has_value() ? mask_values.data_ptr<float>() : nullptr;
  auto context = at::empty({batch, len, heads, head_dim}, q.options());
  const int threads = at::get_num_threads();
  auto column_sums = at::zeros({threads, batch, len}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* out = context.data_ptr<float>();
  float* sums = column_sums.data_ptr<float>();
  at::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
    FlushDenormals flush;
    const int thread = at::get_thread_num();
    // Inside another parallel region ATen runs this inline with that region's thread number: refuse rather than
    // share a column-sum slot between threads.
    TORCH_CHECK(thread < threads, "attention_with_significance called from inside a parallel region");
    // Kept per thread across calls (intra-op threads live as long as the process): a fresh 1.2 MB buffer per
    // call came from mmap and page-faulted, 0.7 ms per MiniLM forward at length 384. It only grows.
    thread_local std::vector<float> scores;
    if (scores.size() < static_cast<size_t>(len * len)) scores.resize(len * len);
    float* probs = scores.data();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / heads, h = task % heads;
      const float* qh = qp + b * q.stride(0) + h * q.stride(2);
      const float* kh = kp + b * k.stride(0) + h * k.stride(2);
      const float* vh = vp + b * v.stride(0) + h * v.stride(2);
      float* received = sums + (thread * batch + b) * len;
      gemm_rowmajor(true, len, len, head_dim, static_cast<float>(scale), qh, q.stride(1), kh, k.stride(1), probs,
                    len);
      if (mp == nullptr) {
        for (int64_t i = 0; i < len; ++i) softmax_accumulate(probs + i * len, received, len);
      } else {
        const float* row_mask = mp + b * len;
        for (int64_t i = 0; i < len; ++i)
          softmax_masked(probs + i * len, row_mask[i] != 0.f ? received : nullptr, row_mask, len);
      }
      gemm_rowmajor(false, len, head_dim, len, 1.f, probs, len, vh, v.stride(1),
                    out + (b * len * heads + h) * head_dim, heads * head_dim);
    }
  });
  return {context, column_sums.sum(0)};
}

// Positions (batch, width) of the `width` highest scores of each row, in increasing order; ties go to the earlier
// position, and keep_cls puts position 0 first. One call instead of topk and sort (about 40 us less per layer).
at::Tensor top_tokens(const at::Tensor& score, int64_t width, bool keep_cls) {
  TORCH_CHECK(score.dim() == 2 && score.device().is_cpu() && score.scalar_type() == at::kFloat,
              "score must be a (batch, len) float32 CPU tensor");
  const int64_t batch = score.size(0), len = score.size(1);
  TORCH_CHECK(width >= 1 && width <= len, "width must be within 1..", len, ", got ", width);
  const at::Tensor contiguous = score.contiguous();
  auto index = at::empty({batch, width}, score.options().dtype(at::kLong));
  std::vector<int32_t> key(len);
  std::vector<int64_t> order(len);
  for (int64_t b = 0; b < batch; ++b) {
    const float* row = contiguous.data_ptr<float>() + b * len;
    for (int64_t j = 0; j < len; ++j) {
      // The float's bits as an integer that orders like the float: a strict total order even for NaN (which
      // -ffast-math comparisons would not give, and std::nth_element needs).
      int32_t bits;
      std::memcpy(&bits, row + j, sizeof bits);
      key[j] = bits >= 0 ? bits : bits ^ 0x7fffffff;
    }
    if (keep_cls) key[0] = std::numeric_limits<int32_t>::max();
    std::iota(order.begin(), order.end(), 0);
    const auto higher = [&](int64_t a, int64_t c) { return key[a] > key[c] || (key[a] == key[c] && a < c); };
    std::nth_element(order.begin(), order.begin() + (width - 1), order.end(), higher);
    std::sort(order.begin(), order.begin() + width);
    std::copy(order.begin(), order.begin() + width, index.data_ptr<int64_t>() + b * width);
  }
  return index;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attention_with_significance", &attention_with_significance,
        "Fused self-attention returning (context, significance)", py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("scale"), py::arg("mask") = py::none());
  m.def("top_tokens", &top_tokens, "Positions of the highest scores per row, in increasing order");
}
