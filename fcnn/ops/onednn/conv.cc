// oneDNN convolutions as XLA FFI custom calls: forward, input gradient (backward
// data) and kernel gradient (backward weights), channels-last.
//
// Layouts (row-major, as XLA hands the buffers over):
//   x  (N, *S, C_in)            activations, any of 1-3 spatial dimensions
//   k  (*K, C_in / G, C_out)    kernel, HWIO (DHWIO / WIO)
//   y  (N, *O, C_out)           output
// Each handler reads the geometry from its buffers' shapes plus the attributes
// strides, dilation (1 = dense), pad_lo, pad_hi (one entry per spatial dimension)
// and groups. oneDNN sees the activations as nhwc and the kernel through explicit
// strides (logical dims (G,) O, I, *K); the primitive picks its own blocked kernel
// layout ("any") and the kernel is reordered into it (forward, backward data) or out
// of it (backward weights) on every call: kernels are small next to activations.
//
// Primitives are created once per configuration and kept in a process-wide cache
// (creation costs 0.1-2 ms, execution is thread-safe). The scratchpad is
// user-managed, in a per-thread buffer, so that several threads may run the same
// primitive at once.
//
// Threads (FCNN_ONEDNN_THREADING, read once):
//   "xla" (default)  the batch is cut into chunks (FCNN_ONEDNN_CHUNKS per thread of
//                    XLA's intra-op pool, default 2) that the calling thread and
//                    tasks scheduled on XLA's own pool (the FFI ThreadPool context)
//                    take in turn; each chunk runs oneDNN single-threaded. No second
//                    thread pool: no OpenMP team whose members wait at a barrier for
//                    a descheduled one, or spin for milliseconds after each call
//                    while XLA wants the core. The kernel gradient sums per-chunk
//                    partial kernels (float32) at the end.
//   "omp"            one oneDNN call over the whole batch on oneDNN's own runtime
//                    (OpenMP in the onednn-cpu-gomp wheel), FCNN_ONEDNN_THREADS
//                    threads (default: OpenMP's, all CPUs of the affinity mask).
// The team size is set around each primitive creation and execution only, and
// restored after (ScopedOmpThreads); primitives are cached per team size. OpenMP's
// functions are looked up in the runtime libdnnl links (dlsym from its handle), so a
// TBB build of oneDNN ignores them.
//
// Build (fcnn/ops/onednn/build.py does this on first use):
//   g++ -O2 -std=c++17 -fPIC -shared conv.cc -I<jaxlib/include> -I<onednn/include>
//       -L<onednn/lib> -ldnnl -Wl,-rpath,<onednn/lib> -Wl,--disable-new-dtags

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

#if DNNL_VERSION_MAJOR < 3
#error "fcnn's oneDNN convolution needs oneDNN >= 3.0 (the v3 primitive-descriptor API)"
#endif

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using Dims = std::vector<int64_t>;

enum Pass : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// ---------------------------------------------------------------------------------
// Settings read once from the environment

int EnvInt(const char* name, int fallback) {
  const char* text = std::getenv(name);
  return text != nullptr && std::atoi(text) > 0 ? std::atoi(text) : fallback;
}

bool UseXlaPool() {
  static const bool xla = [] {
    const char* text = std::getenv("FCNN_ONEDNN_THREADING");
    return text == nullptr || std::strcmp(text, "omp") != 0;
  }();
  return xla;
}

int ChunksPerThread() {
  static const int n = EnvInt("FCNN_ONEDNN_CHUNKS", 2);
  return n;
}

using OmpSetNumThreads = void (*)(int);
using OmpGetMaxThreads = int (*)();

// An OpenMP function of the runtime oneDNN itself links (searched from libdnnl's
// handle: another OpenMP runtime in the process, e.g. PyTorch's bundled libgomp,
// must not be the one set), or nullptr (a TBB or sequential build of oneDNN).
template <typename F>
F OmpFunction(const char* name) {
  static void* const dnnl = [] {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&dnnl_version), &info) == 0 ||
        info.dli_fname == nullptr) {
      return static_cast<void*>(nullptr);
    }
    return dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  }();
  void* f = dnnl != nullptr ? dlsym(dnnl, name) : nullptr;
  return reinterpret_cast<F>(f);
}

// The OpenMP team size oneDNN should use: 1 in "xla" mode, FCNN_ONEDNN_THREADS in
// "omp" mode, or 0 (leave the runtime's setting).
int WantedThreads() { return UseXlaPool() ? 1 : EnvInt("FCNN_ONEDNN_THREADS", 0); }

// Sets the calling thread's OpenMP team size (a per-thread setting) for the scope of
// one primitive creation or execution, and restores it after: the thread belongs to
// XLA, or is Python's main thread whose setting PyTorch may share (its wheel bundles
// a libgomp.so.1 of the same soname, so both may use one runtime).
class ScopedOmpThreads {
 public:
  ScopedOmpThreads() {
    static const auto get = OmpFunction<OmpGetMaxThreads>("omp_get_max_threads");
    static const auto set = OmpFunction<OmpSetNumThreads>("omp_set_num_threads");
    set_ = set;
    const int wanted = WantedThreads();
    if (get == nullptr || set == nullptr) {
      threads_ = std::max(wanted, 0);
      return;
    }
    saved_ = get();
    threads_ = wanted > 0 ? wanted : saved_;
    if (threads_ != saved_) set(threads_);
  }
  ~ScopedOmpThreads() {
    if (set_ != nullptr && threads_ != saved_) set_(saved_);
  }
  ScopedOmpThreads(const ScopedOmpThreads&) = delete;
  ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;
  // The team size in force (0: unknown, not an OpenMP build).
  int threads() const { return threads_; }

 private:
  OmpSetNumThreads set_ = nullptr;
  int saved_ = 0;
  int threads_ = 0;
};

int SchedulableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

// ---------------------------------------------------------------------------------
// Geometry, memory descriptors, the primitive cache

// The complete static description of one oneDNN call; also the cache key.
struct Geometry {
  int64_t pass = 0;
  int64_t dtype = 0;         // 0 float32, 1 bfloat16
  int64_t f32_kernel = 0;    // 1: kernel-gradient output in float32 (partial sums)
  int64_t groups = 1;
  int64_t threads = 0;       // OpenMP team size the primitive is made for
  Dims x, k, y;              // shapes as XLA sees them (channels-last, HWIO)
  Dims strides, dilation, pad_lo, pad_hi;

  Dims Flat() const {
    Dims key = {pass, dtype, f32_kernel, groups, threads, static_cast<int64_t>(x.size())};
    for (const Dims* d : {&x, &k, &y, &strides, &dilation, &pad_lo, &pad_hi}) {
      key.push_back(-1);
      key.insert(key.end(), d->begin(), d->end());
    }
    return key;
  }

  Geometry WithBatch(int64_t n) const {
    Geometry g = *this;
    g.x[0] = g.y[0] = n;
    return g;
  }
};

struct KeyHash {
  size_t operator()(const Dims& key) const {
    size_t h = 1469598103934665603ull;
    for (int64_t v : key) h = (h ^ static_cast<size_t>(v)) * 1099511628211ull;
    return h;
  }
};

memory::data_type DnnlType(int64_t dtype) {
  return dtype == 1 ? memory::data_type::bf16 : memory::data_type::f32;
}

int64_t Product(const Dims& d, size_t from) {
  int64_t p = 1;
  for (size_t i = from; i < d.size(); ++i) p *= d[i];
  return p;
}

// (N, *S, C) row-major as oneDNN's logical (N, C, *S).
memory::desc ActivationDesc(const Dims& shape, memory::data_type dt) {
  const size_t nd = shape.size() - 2;
  const int64_t c = shape.back();
  memory::dims dims = {shape[0], c};
  memory::dims strides = {Product(shape, 1), 1};
  for (size_t i = 0; i < nd; ++i) {
    dims.push_back(shape[1 + i]);
    strides.push_back(Product(shape, 2 + i));
  }
  return memory::desc(dims, dt, strides);
}

// (*K, Cig, C_out) row-major as oneDNN's logical (O, I, *K), or (G, Og, Ig, *K).
memory::desc KernelDesc(const Dims& shape, int64_t groups, memory::data_type dt) {
  const size_t nd = shape.size() - 2;
  const int64_t cig = shape[nd], c_out = shape[nd + 1], cog = c_out / groups;
  memory::dims dims, strides;
  if (groups > 1) {
    dims = {groups, cog, cig};
    strides = {cog, 1, c_out};
  } else {
    dims = {c_out, cig};
    strides = {1, c_out};
  }
  for (size_t i = 0; i < nd; ++i) {
    dims.push_back(shape[i]);
    strides.push_back(Product(shape, i + 1));
  }
  return memory::desc(dims, dt, strides);
}

const dnnl::engine& Engine() {
  static const dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// One cached primitive with the kernel layout it wants.
struct Plan {
  dnnl::primitive primitive;
  memory::desc x_md, k_md, y_md;  // user layouts (k_md in float32 when f32_kernel)
  memory::desc k_opt_md;          // the primitive's kernel layout
  bool reorder = false;
  dnnl::reorder kernel_reorder;   // user -> opt (forward, data) or opt -> user (weights)
  size_t scratch_bytes = 0;
  size_t reorder_scratch_bytes = 0;
  std::string impl;
};

std::shared_ptr<Plan> MakePlan(const Geometry& g) {
  const auto& eng = Engine();
  const auto dt = DnnlType(g.dtype);
  const auto kdt = g.f32_kernel ? memory::data_type::f32 : dt;
  const size_t nd = g.x.size() - 2;
  auto plan = std::make_shared<Plan>();
  plan->x_md = ActivationDesc(g.x, dt);
  plan->y_md = ActivationDesc(g.y, dt);
  plan->k_md = KernelDesc(g.k, g.groups, kdt);
  const memory::desc k_any(plan->k_md.get_dims(), kdt, memory::format_tag::any);
  const memory::desc k_any_fwd(plan->k_md.get_dims(), dt, memory::format_tag::any);
  memory::dims strides(g.strides.begin(), g.strides.end());
  memory::dims dilates(nd), pad_lo(g.pad_lo.begin(), g.pad_lo.end()),
      pad_hi(g.pad_hi.begin(), g.pad_hi.end());
  for (size_t i = 0; i < nd; ++i) dilates[i] = g.dilation[i] - 1;  // oneDNN: 0 = dense

  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto algo = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(
      eng, dnnl::prop_kind::forward_training, algo, plan->x_md, k_any_fwd, plan->y_md,
      strides, dilates, pad_lo, pad_hi, attr);
  memory::desc scratch_md;
  if (g.pass == kForward) {
    plan->primitive = dnnl::convolution_forward(fwd);
    plan->k_opt_md = fwd.weights_desc();
    scratch_md = fwd.scratchpad_desc();
    plan->impl = fwd.impl_info_str();
  } else if (g.pass == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        eng, algo, plan->x_md, k_any, plan->y_md, strides, dilates, pad_lo, pad_hi,
        fwd, attr);
    plan->primitive = dnnl::convolution_backward_data(pd);
    plan->k_opt_md = pd.weights_desc();
    scratch_md = pd.scratchpad_desc();
    plan->impl = pd.impl_info_str();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        eng, algo, plan->x_md, k_any, plan->y_md, strides, dilates, pad_lo, pad_hi,
        fwd, attr);
    plan->primitive = dnnl::convolution_backward_weights(pd);
    plan->k_opt_md = pd.diff_weights_desc();
    scratch_md = pd.scratchpad_desc();
    plan->impl = pd.impl_info_str();
  }
  plan->scratch_bytes = scratch_md.get_size();
  plan->reorder = plan->k_opt_md != plan->k_md;
  if (plan->reorder) {
    const bool to_opt = g.pass != kBackwardWeights;
    const auto& from = to_opt ? plan->k_md : plan->k_opt_md;
    const auto& to = to_opt ? plan->k_opt_md : plan->k_md;
    dnnl::reorder::primitive_desc rpd(eng, from, eng, to, attr);
    plan->kernel_reorder = dnnl::reorder(rpd);
    plan->reorder_scratch_bytes = rpd.scratchpad_desc().get_size();
  }
  return plan;
}

// The cached plan for `g`, made (if new) for the calling thread's team size, which
// the caller holds with a ScopedOmpThreads.
std::shared_ptr<Plan> GetPlan(Geometry g, const ScopedOmpThreads& omp) {
  static std::mutex mu;
  static auto* cache = new std::unordered_map<Dims, std::shared_ptr<Plan>, KeyHash>();
  g.threads = omp.threads();
  const Dims key = g.Flat();
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  auto plan = MakePlan(g);  // outside the lock: creation may take milliseconds
  std::lock_guard<std::mutex> lock(mu);
  return cache->emplace(key, plan).first->second;
}

// ---------------------------------------------------------------------------------
// Buffers and the single oneDNN calls

// A 64-byte aligned buffer that only grows.
struct Buffer {
  void* data = nullptr;
  size_t size = 0;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(data); }
  void* Get(size_t bytes) {
    if (bytes > size || data == nullptr) {
      std::free(data);
      size = (std::max<size_t>(bytes, 1) + 4095) / 4096 * 4096;
      data = std::aligned_alloc(64, size);
      if (data == nullptr) throw std::bad_alloc();
    }
    return data;
  }
};

memory BytesMemory(size_t bytes, Buffer& buffer) {
  return memory(memory::desc({static_cast<int64_t>(std::max<size_t>(bytes, 1))},
                             memory::data_type::u8, memory::format_tag::a),
                Engine(), buffer.Get(bytes));
}

void Reorder(const Plan& plan, memory& from, memory& to) {
  thread_local Buffer scratch;
  memory sm = BytesMemory(plan.reorder_scratch_bytes, scratch);
  plan.kernel_reorder.execute(
      Stream(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, sm}});
}

// Runs a plan's primitive once. `kernel` is in the primitive's layout (k_opt_md).
void RunPrimitive(const Geometry& g, const Plan& plan, void* x, void* kernel, void* y) {
  thread_local Buffer scratch;
  const auto& eng = Engine();
  memory xm(plan.x_md, eng, x), km(plan.k_opt_md, eng, kernel), ym(plan.y_md, eng, y);
  memory sm = BytesMemory(plan.scratch_bytes, scratch);
  if (g.pass == kForward) {
    plan.primitive.execute(Stream(), {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, km},
                                      {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, sm}});
  } else if (g.pass == kBackwardData) {
    plan.primitive.execute(Stream(), {{DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_WEIGHTS, km},
                                      {DNNL_ARG_DIFF_SRC, xm}, {DNNL_ARG_SCRATCHPAD, sm}});
  } else {
    plan.primitive.execute(Stream(), {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, ym},
                                      {DNNL_ARG_DIFF_WEIGHTS, km},
                                      {DNNL_ARG_SCRATCHPAD, sm}});
  }
  Stream().wait();
}

// The kernel `k` (user layout) in the plan's layout: `k` itself or `buffer`.
void* KernelIn(const Plan& plan, void* k, Buffer& buffer) {
  if (!plan.reorder) return k;
  void* opt = buffer.Get(plan.k_opt_md.get_size());
  memory from(plan.k_md, Engine(), k), to(plan.k_opt_md, Engine(), opt);
  Reorder(plan, from, to);
  Stream().wait();
  return opt;
}

// One call over the whole batch (the "omp" mode, and batches too small to split).
void ExecuteWhole(const Geometry& g, void* x, void* k, void* y) {
  thread_local Buffer kernel_buffer;
  ScopedOmpThreads omp;
  auto plan = GetPlan(g, omp);
  if (g.pass != kBackwardWeights) {
    RunPrimitive(g, *plan, x, KernelIn(*plan, k, kernel_buffer), y);
    return;
  }
  void* out = plan->reorder ? kernel_buffer.Get(plan->k_opt_md.get_size()) : k;
  RunPrimitive(g, *plan, x, out, y);
  if (plan->reorder) {
    memory from(plan->k_opt_md, Engine(), out), to(plan->k_md, Engine(), k);
    Reorder(*plan, from, to);
    Stream().wait();
  }
}

// ---------------------------------------------------------------------------------
// Chunks of the batch on XLA's thread pool

// Runs body(0..count-1) on the calling thread and on up to `helpers` tasks scheduled
// on XLA's pool, each taking the next unclaimed chunk. Waits only for chunks that were
// claimed, so a task the pool starts late (or never) cannot block the caller.
void ParallelChunks(ffi::ThreadPool* pool, int64_t count, int64_t helpers,
                    const std::function<void(int64_t)>& body) {
  struct State {
    std::atomic<int64_t> next{0};
    int64_t done = 0;
    int64_t count = 0;
    const std::function<void(int64_t)>* body = nullptr;
    std::mutex mu;
    std::condition_variable cv;
    std::string error;
  };
  auto state = std::make_shared<State>();
  state->count = count;
  state->body = &body;
  auto work = [state] {
    for (int64_t i; (i = state->next.fetch_add(1)) < state->count;) {
      std::string error;
      try {
        ScopedOmpThreads omp;
        (*state->body)(i);
      } catch (const std::exception& e) {
        error = e.what();
      }
      std::lock_guard<std::mutex> lock(state->mu);
      if (!error.empty() && state->error.empty()) state->error = error;
      if (++state->done == state->count) state->cv.notify_all();
    }
  };
  for (int64_t i = 0; i < helpers && pool != nullptr; ++i) {
    auto task = work;
    pool->Schedule(std::move(task));
  }
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done == state->count; });
  if (!state->error.empty()) throw std::runtime_error(state->error);
}

// (start, size) of each chunk: `count` near-equal slices of n.
std::vector<std::pair<int64_t, int64_t>> Chunks(int64_t n, int64_t count) {
  std::vector<std::pair<int64_t, int64_t>> out;
  int64_t start = 0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t size = n / count + (i < n % count ? 1 : 0);
    out.emplace_back(start, size);
    start += size;
  }
  return out;
}

int64_t ChunkCount(int64_t n, int64_t threads) {
  if (!UseXlaPool() || threads <= 1) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(n, threads * ChunksPerThread()));
}

uint16_t ToBfloat16(float value) {  // round to nearest even, as XLA converts
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

void ExecuteChunked(const Geometry& g, void* x, void* k, void* y, ffi::ThreadPool* pool,
                    int64_t threads) {
  ScopedOmpThreads omp;
  const int64_t count = ChunkCount(g.x[0], threads);
  if (count == 1) {
    ExecuteWhole(g, x, k, y);
    return;
  }
  const auto chunks = Chunks(g.x[0], count);
  const size_t item = g.dtype == 1 ? 2 : 4;
  const int64_t x_step = Product(g.x, 1) * item, y_step = Product(g.y, 1) * item;
  // At most two chunk sizes: their plans, and (forward, data) their kernels.
  const int64_t big = chunks.front().second, small = chunks.back().second;
  Geometry g_big = g.WithBatch(big), g_small = g.WithBatch(small);
  if (g.pass == kBackwardWeights) g_big.f32_kernel = g_small.f32_kernel = 1;
  auto plan_big = GetPlan(g_big, omp), plan_small = GetPlan(g_small, omp);
  auto* xb = static_cast<char*>(x);
  auto* yb = static_cast<char*>(y);

  if (g.pass != kBackwardWeights) {
    Buffer kb_big, kb_small;
    void* k_big = KernelIn(*plan_big, k, kb_big);
    void* k_small = small == big ? k_big : KernelIn(*plan_small, k, kb_small);
    ParallelChunks(pool, count, std::min(threads, count) - 1, [&](int64_t i) {
      const auto [start, size] = chunks[i];
      const bool is_big = size == big;
      RunPrimitive(is_big ? g_big : g_small, is_big ? *plan_big : *plan_small,
                   xb + start * x_step, is_big ? k_big : k_small, yb + start * y_step);
    });
    return;
  }
  // Kernel gradient: each chunk's partial kernel, float32 in the user layout.
  const int64_t kernel_size = Product(g.k, 0);
  std::vector<float> partials(static_cast<size_t>(count * kernel_size));
  ParallelChunks(pool, count, std::min(threads, count) - 1, [&](int64_t i) {
    thread_local Buffer opt;
    const auto [start, size] = chunks[i];
    const bool is_big = size == big;
    const Plan& plan = is_big ? *plan_big : *plan_small;
    const Geometry& gi = is_big ? g_big : g_small;
    float* part = partials.data() + i * kernel_size;
    void* out = plan.reorder ? opt.Get(plan.k_opt_md.get_size()) : part;
    RunPrimitive(gi, plan, xb + start * x_step, out, yb + start * y_step);
    if (plan.reorder) {
      memory from(plan.k_opt_md, Engine(), out), to(plan.k_md, Engine(), part);
      Reorder(plan, from, to);
      Stream().wait();
    }
  });
  for (int64_t i = 1; i < count; ++i) {
    const float* part = partials.data() + i * kernel_size;
    for (int64_t j = 0; j < kernel_size; ++j) partials[j] += part[j];
  }
  if (g.dtype == 1) {
    auto* out = static_cast<uint16_t*>(k);
    for (int64_t j = 0; j < kernel_size; ++j) out[j] = ToBfloat16(partials[j]);
  } else {
    std::memcpy(k, partials.data(), static_cast<size_t>(kernel_size) * sizeof(float));
  }
}

// ---------------------------------------------------------------------------------
// The FFI handlers

Dims ToDims(ffi::Span<const int64_t> s) { return Dims(s.begin(), s.end()); }

// Fills the geometry and checks what oneDNN would not (it checks sizes itself).
ffi::Error MakeGeometry(int64_t pass, ffi::DataType x_type, ffi::DataType k_type,
                        ffi::DataType y_type, Dims x, Dims k, Dims y,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> dilation,
                        ffi::Span<const int64_t> pad_lo, ffi::Span<const int64_t> pad_hi,
                        int64_t groups, Geometry* g) {
  if (x_type != k_type || x_type != y_type) {
    return ffi::Error::InvalidArgument("fcnn oneDNN conv: operands must share one dtype");
  }
  if (x_type == ffi::DataType::F32) {
    g->dtype = 0;
  } else if (x_type == ffi::DataType::BF16) {
    g->dtype = 1;
  } else {
    return ffi::Error::InvalidArgument("fcnn oneDNN conv: dtype must be float32 or bfloat16");
  }
  const size_t rank = x.size();
  if (rank < 3 || rank > 5 || k.size() != rank || y.size() != rank) {
    return ffi::Error::InvalidArgument("fcnn oneDNN conv: inconsistent ranks");
  }
  const size_t nd = rank - 2;
  if (strides.size() != nd || dilation.size() != nd || pad_lo.size() != nd ||
      pad_hi.size() != nd) {
    return ffi::Error::InvalidArgument("fcnn oneDNN conv: one setting per spatial dimension");
  }
  if (groups < 1 || k[nd] * groups != x.back() || y.back() != k.back() ||
      k.back() % groups != 0 || x[0] != y[0] || x[0] < 1) {
    return ffi::Error::InvalidArgument("fcnn oneDNN conv: inconsistent batch, channels or groups");
  }
  g->pass = pass;
  g->groups = groups;
  g->x = std::move(x);
  g->k = std::move(k);
  g->y = std::move(y);
  g->strides = ToDims(strides);
  g->dilation = ToDims(dilation);
  g->pad_lo = ToDims(pad_lo);
  g->pad_hi = ToDims(pad_hi);
  return ffi::Error::Success();
}

ffi::Error Run(ffi::ThreadPool& pool, const Geometry& g, void* x, void* k, void* y) {
  try {
    const int64_t threads = UseXlaPool() ? std::max<int64_t>(1, pool.num_threads()) : 1;
    ExecuteChunked(g, x, k, y, &pool, threads);
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("fcnn oneDNN conv: ") + e.what());
  }
  return ffi::Error::Success();
}

using Attrs = ffi::Span<const int64_t>;

ffi::Error ConvForward(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer k,
                       ffi::Result<ffi::AnyBuffer> y, Attrs strides, Attrs dilation,
                       Attrs pad_lo, Attrs pad_hi, int64_t groups) {
  Geometry g;
  auto err = MakeGeometry(kForward, x.element_type(), k.element_type(), y->element_type(),
                          ToDims(x.dimensions()), ToDims(k.dimensions()),
                          ToDims(y->dimensions()), strides, dilation, pad_lo, pad_hi, groups,
                          &g);
  if (err.failure()) return err;
  return Run(pool, g, x.untyped_data(), k.untyped_data(), y->untyped_data());
}

ffi::Error ConvInputGrad(ffi::ThreadPool pool, ffi::AnyBuffer dy, ffi::AnyBuffer k,
                         ffi::Result<ffi::AnyBuffer> dx, Attrs strides, Attrs dilation,
                         Attrs pad_lo, Attrs pad_hi, int64_t groups) {
  Geometry g;
  auto err = MakeGeometry(kBackwardData, dx->element_type(), k.element_type(),
                          dy.element_type(), ToDims(dx->dimensions()), ToDims(k.dimensions()),
                          ToDims(dy.dimensions()), strides, dilation, pad_lo, pad_hi, groups,
                          &g);
  if (err.failure()) return err;
  return Run(pool, g, dx->untyped_data(), k.untyped_data(), dy.untyped_data());
}

ffi::Error ConvKernelGrad(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer dy,
                          ffi::Result<ffi::AnyBuffer> dk, Attrs strides, Attrs dilation,
                          Attrs pad_lo, Attrs pad_hi, int64_t groups) {
  Geometry g;
  auto err = MakeGeometry(kBackwardWeights, x.element_type(), dk->element_type(),
                          dy.element_type(), ToDims(x.dimensions()), ToDims(dk->dimensions()),
                          ToDims(dy.dimensions()), strides, dilation, pad_lo, pad_hi, groups,
                          &g);
  if (err.failure()) return err;
  return Run(pool, g, x.untyped_data(), dk->untyped_data(), dy.untyped_data());
}

#define FCNN_CONV_BINDING                        \
  ffi::Ffi::Bind()                               \
      .Ctx<ffi::ThreadPool>()                    \
      .Arg<ffi::AnyBuffer>()                     \
      .Arg<ffi::AnyBuffer>()                     \
      .Ret<ffi::AnyBuffer>()                     \
      .Attr<Attrs>("strides")                    \
      .Attr<Attrs>("dilation")                   \
      .Attr<Attrs>("pad_lo")                     \
      .Attr<Attrs>("pad_hi")                     \
      .Attr<int64_t>("groups")

void CopyOut(const std::string& text, char* out, int64_t out_len) {
  if (out_len <= 0) return;
  std::strncpy(out, text.c_str(), static_cast<size_t>(out_len - 1));
  out[out_len - 1] = '\0';
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FcnnOnednnConvForward, ConvForward, FCNN_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FcnnOnednnConvInputGrad, ConvInputGrad, FCNN_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FcnnOnednnConvKernelGrad, ConvKernelGrad, FCNN_CONV_BINDING);

// ctypes entry points for Python: which implementation oneDNN picks for a call (as it
// will run: per chunk in "xla" mode, with one chunk per schedulable CPU and
// FCNN_ONEDNN_CHUNKS per CPU), or why it refuses it; and the library's version.

extern "C" int fcnn_onednn_implementation(int64_t pass, int64_t dtype, int64_t rank,
                                          const int64_t* x, const int64_t* k,
                                          const int64_t* y, const int64_t* strides,
                                          const int64_t* dilation, const int64_t* pad_lo,
                                          const int64_t* pad_hi, int64_t groups, char* out,
                                          int64_t out_len) {
  try {
    ScopedOmpThreads omp;
    const int64_t nd = rank - 2;
    Geometry g;
    g.pass = pass;
    g.dtype = dtype;
    g.groups = groups;
    g.x.assign(x, x + rank);
    g.k.assign(k, k + rank);
    g.y.assign(y, y + rank);
    g.strides.assign(strides, strides + nd);
    g.dilation.assign(dilation, dilation + nd);
    g.pad_lo.assign(pad_lo, pad_lo + nd);
    g.pad_hi.assign(pad_hi, pad_hi + nd);
    const int64_t count = ChunkCount(g.x[0], SchedulableCpus());
    if (count > 1) {
      g = g.WithBatch(Chunks(g.x[0], count).front().second);
      if (pass == kBackwardWeights) g.f32_kernel = 1;
    }
    CopyOut(GetPlan(g, omp)->impl, out, out_len);
    return 0;
  } catch (const std::exception& e) {
    CopyOut(e.what(), out, out_len);
    return 1;
  }
}

extern "C" int fcnn_onednn_version(char* out, int64_t out_len) {
  const dnnl_version_t* v = dnnl::version();
  const unsigned runtime = v->cpu_runtime;
  const char* name = runtime == DNNL_RUNTIME_TBB           ? "TBB"
                     : runtime == DNNL_RUNTIME_OMP        ? "OpenMP"
                     : runtime == DNNL_RUNTIME_SEQ        ? "sequential"
                     : runtime == DNNL_RUNTIME_THREADPOOL ? "threadpool"
                                                          : "other";
  std::string isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx2: isa = "avx2"; break;
    case dnnl::cpu_isa::avx2_vnni: isa = "avx2_vnni"; break;
    case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
    case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_fp16: isa = "avx512_core_fp16"; break;
    case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
    default: isa = std::to_string(static_cast<int>(dnnl::get_effective_cpu_isa()));
  }
  ScopedOmpThreads scoped;
  const std::string omp =
      scoped.threads() > 0 ? std::to_string(scoped.threads()) + " OpenMP thread(s) per call"
                           : std::string("no OpenMP control");
  std::string threads;
  if (UseXlaPool()) {
    threads = "XLA's pool, " + std::to_string(ChunksPerThread()) +
              " batch chunks per thread, " + omp;
  } else {
    threads = "oneDNN's own, " + omp;
  }
  std::string text = std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                     std::to_string(v->patch) + ", cpu runtime " + name + ", isa " + isa +
                     ", threads: " + threads;
  CopyOut(text, out, out_len);
  return 0;
}
