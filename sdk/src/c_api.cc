// The C ABI (axon_worker.h) over axon::sdk::Worker, built into libaxon_worker.so.
//
// Everything here is a thin translation: C structs in, C++ types out and back, with
// every struct layout pinned by static_assert so bindings written against the header
// (ctypes, cgo, ...) can never drift silently. No C++ exception crosses the boundary.
// The hot-path functions neither allocate nor lock; error text goes into a fixed
// thread-local buffer for the same reason.
#define AXON_WORKER_BUILDING 1
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "axon/common/clock.h"
#include "axon/sdk/worker.h"
#include "axon/shm/error.h"
#include "axon/shm/layout.h"

#include "axon_worker.h"

namespace sdk = axon::sdk;
namespace shm = axon::shm;

// --- ABI locks: changing any of these is an ABI change (bump AXON_WORKER_ABI_VERSION).
static_assert(sizeof(axon_request) == 240);
static_assert(alignof(axon_request) == 8);
static_assert(offsetof(axon_request, data) == 0);
static_assert(offsetof(axon_request, length) == 8);
static_assert(offsetof(axon_request, capacity) == 12);
static_assert(offsetof(axon_request, request_id) == 16);
static_assert(offsetof(axon_request, tenant_id) == 24);
static_assert(offsetof(axon_request, agent_id) == 28);
static_assert(offsetof(axon_request, session_key) == 32);
static_assert(offsetof(axon_request, deadline_us) == 40);
static_assert(offsetof(axon_request, priority) == 44);
static_assert(offsetof(axon_request, trace_flags) == 45);
static_assert(offsetof(axon_request, trace_id) == 48);
static_assert(offsetof(axon_request, parent_span_id) == 64);
static_assert(offsetof(axon_request, enqueue_ns) == 72);
static_assert(offsetof(axon_request, internal_) == 80);
static_assert(sizeof(axon_buffer) == 24);
static_assert(offsetof(axon_buffer, capacity) == 8);
static_assert(offsetof(axon_buffer, offset) == 12);
static_assert(offsetof(axon_buffer, in_place) == 16);
static_assert(sizeof(axon_reply) == 32);
static_assert(offsetof(axon_reply, length) == 24);
static_assert(offsetof(axon_reply, status) == 28);
static_assert(sizeof(axon_worker_stats) == 96);
static_assert(offsetof(axon_worker_stats, generation) == 40);
static_assert(offsetof(axon_worker_stats, worker_id) == 48);
static_assert(offsetof(axon_worker_stats, hugepages) == 52);
static_assert(offsetof(axon_worker_stats, interactive) == 56);
static_assert(offsetof(axon_worker_stats, background) == 64);
static_assert(offsetof(axon_worker_stats, deadline_expired) == 72);
static_assert(offsetof(axon_worker_stats, background_forced) == 80);
static_assert(offsetof(axon_worker_stats, background_every) == 88);
static_assert(AXON_WORKER_MAX_BURST == sdk::Worker::kMaxBurst);
static_assert(sizeof(axon_trace_context) == 40);
static_assert(offsetof(axon_trace_context, parent_span_id) == 16);
static_assert(offsetof(axon_trace_context, span_id) == 24);
static_assert(offsetof(axon_trace_context, flags) == 32);
static_assert(offsetof(axon_trace_context, valid) == 34);
static_assert(AXON_TRACEPARENT_SIZE == sizeof(sdk::Traceparent));
static_assert(sizeof(shm::Descriptor::trace_id) == sizeof(axon_request::trace_id));
static_assert(sizeof(shm::Descriptor::parent_span_id) == sizeof(axon_request::parent_span_id));
static_assert(AXON_REPLY_OK == int(shm::ReplyStatus::ok));
static_assert(AXON_REPLY_HANDLER_ERROR == int(shm::ReplyStatus::handler_error));
static_assert(AXON_REPLY_TOO_LARGE == int(shm::ReplyStatus::reply_too_large));
static_assert(AXON_REPLY_DEADLINE_EXCEEDED == int(shm::ReplyStatus::deadline_exceeded));

namespace {

// ShmError n maps to status -(n + 1); these asserts keep the two enums in step.
constexpr int status_of(shm::ShmError code) {
  return -(static_cast<int>(code) + 1);
}
static_assert(status_of(shm::ShmError::invalid_argument) == AXON_ERR_INVALID_ARGUMENT);
static_assert(status_of(shm::ShmError::memfd_failed) == AXON_ERR_MEMFD_FAILED);
static_assert(status_of(shm::ShmError::no_memory) == AXON_ERR_NO_MEMORY);
static_assert(status_of(shm::ShmError::map_failed) == AXON_ERR_MAP_FAILED);
static_assert(status_of(shm::ShmError::seal_failed) == AXON_ERR_SEAL_FAILED);
static_assert(status_of(shm::ShmError::bad_fd) == AXON_ERR_BAD_FD);
static_assert(status_of(shm::ShmError::truncated) == AXON_ERR_TRUNCATED);
static_assert(status_of(shm::ShmError::bad_magic) == AXON_ERR_BAD_MAGIC);
static_assert(status_of(shm::ShmError::version_mismatch) == AXON_ERR_VERSION_MISMATCH);
static_assert(status_of(shm::ShmError::generation_mismatch) == AXON_ERR_GENERATION_MISMATCH);
static_assert(status_of(shm::ShmError::corrupt_geometry) == AXON_ERR_CORRUPT_GEOMETRY);
static_assert(status_of(shm::ShmError::handoff_failed) == AXON_ERR_HANDOFF_FAILED);
static_assert(status_of(shm::ShmError::watch_failed) == AXON_ERR_WATCH_FAILED);

// What the SDK keeps inside axon_request::internal_: the authoritative copy of the
// descriptor and buffer, so a caller editing the public fields cannot misdirect a reply.
struct RequestInternal {
  unsigned char meta[sizeof(shm::Descriptor)];  // shm::Descriptor is 64-aligned; stored as bytes
  const axon_worker* owner;
  const std::byte* data;
  std::uint64_t tag;
  std::uint32_t length;
  std::uint32_t capacity;
};
static_assert(sizeof(RequestInternal) <= sizeof(axon_request::internal_));
static_assert(alignof(RequestInternal) <= alignof(axon_request));
static_assert(std::is_trivially_copyable_v<RequestInternal> && std::is_trivially_copyable_v<shm::Descriptor>);

constexpr std::uint64_t kRequestTag = 0x5145524e4f5841ull;  // "AXONREQ"

// Fixed storage so reporting an error on the hot path never allocates.
thread_local char g_last_error[512] = "";

__attribute__((format(printf, 2, 3))) int fail(int status, const char* fmt, ...) noexcept {
  std::va_list args;
  va_start(args, fmt);
  std::vsnprintf(g_last_error, sizeof g_last_error, fmt, args);
  va_end(args);
  return status;
}

int fail_shm(const axon::Error<shm::ShmError>& error) noexcept {
  return fail(status_of(error.code), "%s: %s", shm::to_string(error.code), error.message.c_str());
}

bool stop_raised(const volatile int* stop) noexcept {
  return stop != nullptr && *stop != 0;
}

}  // namespace

struct axon_worker {
  explicit axon_worker(sdk::Worker&& attached) noexcept : worker(std::move(attached)) {}

  sdk::Worker worker;
  bool detached = false;
  // Scratch for receive: the C++ requests before they are translated (keeps 6 KiB off
  // the caller's stack and out of every call).
  sdk::Request burst[sdk::Worker::kMaxBurst];
  axon_request run_burst[sdk::Worker::kMaxBurst];
};

namespace {

int adopt(shm::ShmResult<sdk::Worker>&& attached, axon_worker** out) {
  if (!attached) return fail_shm(attached.error());
  auto* handle = new (std::nothrow) axon_worker(std::move(attached).value());
  if (handle == nullptr) return fail(AXON_ERR_INTERNAL, "out of memory allocating the worker handle");
  *out = handle;
  return AXON_OK;
}

// Runs a setup-path body, turning any C++ exception into AXON_ERR_INTERNAL.
template <typename Body>
int guarded(const char* what, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(AXON_ERR_INTERNAL, "%s: out of memory", what);
  } catch (const std::exception& e) {
    return fail(AXON_ERR_INTERNAL, "%s: %s", what, e.what());
  } catch (...) {
    return fail(AXON_ERR_INTERNAL, "%s: unknown C++ exception", what);
  }
}

void export_request(const axon_worker* owner, const sdk::Request& in, axon_request& out) noexcept {
  const shm::Descriptor& d = in.meta;
  out.data = reinterpret_cast<const std::uint8_t*>(in.data);
  out.length = in.length;
  out.capacity = in.capacity;
  out.request_id = d.request_id;
  out.tenant_id = d.tenant_id;
  out.agent_id = d.agent_id;
  out.session_key = d.session_key;
  out.deadline_us = d.deadline_us;
  out.priority = d.priority;
  out.trace_flags = d.trace_flags;
  out.reserved0[0] = out.reserved0[1] = 0;
  std::memcpy(out.trace_id, d.trace_id, sizeof out.trace_id);
  std::memcpy(out.parent_span_id, d.parent_span_id, sizeof out.parent_span_id);
  out.enqueue_ns = d.hop_ns[shm::kHopEnqueue];
  RequestInternal internal{};
  std::memcpy(internal.meta, &d, sizeof internal.meta);
  internal.owner = owner;
  internal.data = in.data;
  internal.tag = kRequestTag;
  internal.length = in.length;
  internal.capacity = in.capacity;
  std::memcpy(out.internal_, &internal, sizeof internal);
}

// The SDK's copy of a request's descriptor (trace context included), for a request it
// handed out; false for anything else.
bool meta_of(const axon_request& in, shm::Descriptor& out) noexcept {
  RequestInternal internal{};
  std::memcpy(&internal, in.internal_, sizeof internal);
  if (internal.tag != kRequestTag) return false;
  std::memcpy(&out, internal.meta, sizeof internal.meta);
  return true;
}

int write_traceparent(const char* what, const axon_request* request, char* out, std::size_t size,
                      sdk::Traceparent (*format)(const shm::Descriptor&) noexcept) noexcept {
  shm::Descriptor meta{};
  if (request == nullptr || out == nullptr || size < AXON_TRACEPARENT_SIZE || !meta_of(*request, meta)) {
    return fail(AXON_ERR_INVALID_ARGUMENT,
                "%s: pass a request from axon_worker_receive_burst and a buffer of at least AXON_TRACEPARENT_SIZE "
                "(%u) bytes",
                what, AXON_TRACEPARENT_SIZE);
  }
  const sdk::Traceparent text = format(meta);
  std::memcpy(out, text.data(), text.size());
  return text[0] != '\0' ? 1 : 0;
}

// Rebuilds the C++ request from the SDK's private copy; rejects anything this worker
// did not hand out.
bool import_request(const axon_worker* owner, const axon_request& in, sdk::Request& out) noexcept {
  RequestInternal internal{};
  std::memcpy(&internal, in.internal_, sizeof internal);
  if (internal.tag != kRequestTag || internal.owner != owner) return false;
  std::memcpy(&out.meta, internal.meta, sizeof internal.meta);
  out.data = internal.data;
  out.length = internal.length;
  out.capacity = internal.capacity;
  return true;
}

sdk::ReplyBuffer import_buffer(const axon_buffer& in) noexcept {
  sdk::ReplyBuffer out;
  out.data = reinterpret_cast<std::byte*>(in.data);
  out.capacity = in.capacity;
  out.offset = in.offset;
  out.in_place = in.in_place != 0;
  return out;
}

void export_buffer(const sdk::ReplyBuffer& in, axon_buffer& out) noexcept {
  out.data = reinterpret_cast<std::uint8_t*>(in.data);
  out.capacity = in.capacity;
  out.offset = in.offset;
  out.in_place = in.in_place ? 1u : 0u;
  out.reserved0 = 0;
}

// Flushes until done or *stop is raised. The C++ flush() takes an std::atomic<bool>,
// which a C caller's `volatile int` cannot be, so the waiting loop lives here; the first
// call to flush() with a raised flag only records the reply-ring-full episode in the stats.
bool flush_until(sdk::Worker& worker, const volatile int* stop) noexcept {
  if (worker.try_flush()) return true;
  const std::atomic<bool> record_only{true};
  worker.flush(&record_only);
  for (std::uint32_t spins = 0; !worker.try_flush(); ++spins) {
    if (stop_raised(stop)) return false;
    // The data plane polls the reply ring, so room appears without a wake.
    if (spins < 1024) {
      axon::cpu_relax();
    } else {
      usleep(50);
    }
  }
  return true;
}

}  // namespace

extern "C" {

uint32_t axon_worker_abi_version(void) {
  return AXON_WORKER_ABI_VERSION;
}

uint32_t axon_worker_request_size(void) {
  return sizeof(axon_request);
}

const char* axon_worker_last_error(void) {
  return g_last_error;
}

const char* axon_status_name(int status) {
  switch (status) {
    case AXON_OK: return "AXON_OK";
    case AXON_ERR_INVALID_ARGUMENT: return "AXON_ERR_INVALID_ARGUMENT";
    case AXON_ERR_MEMFD_FAILED: return "AXON_ERR_MEMFD_FAILED";
    case AXON_ERR_NO_MEMORY: return "AXON_ERR_NO_MEMORY";
    case AXON_ERR_MAP_FAILED: return "AXON_ERR_MAP_FAILED";
    case AXON_ERR_SEAL_FAILED: return "AXON_ERR_SEAL_FAILED";
    case AXON_ERR_BAD_FD: return "AXON_ERR_BAD_FD";
    case AXON_ERR_TRUNCATED: return "AXON_ERR_TRUNCATED";
    case AXON_ERR_BAD_MAGIC: return "AXON_ERR_BAD_MAGIC";
    case AXON_ERR_VERSION_MISMATCH: return "AXON_ERR_VERSION_MISMATCH";
    case AXON_ERR_GENERATION_MISMATCH: return "AXON_ERR_GENERATION_MISMATCH";
    case AXON_ERR_CORRUPT_GEOMETRY: return "AXON_ERR_CORRUPT_GEOMETRY";
    case AXON_ERR_HANDOFF_FAILED: return "AXON_ERR_HANDOFF_FAILED";
    case AXON_ERR_WATCH_FAILED: return "AXON_ERR_WATCH_FAILED";
    case AXON_ERR_AGAIN: return "AXON_ERR_AGAIN";
    case AXON_ERR_NO_LOAN: return "AXON_ERR_NO_LOAN";
    case AXON_ERR_REPLY_TOO_LARGE: return "AXON_ERR_REPLY_TOO_LARGE";
    case AXON_ERR_STOPPED: return "AXON_ERR_STOPPED";
    case AXON_ERR_DATAPLANE_EXITED: return "AXON_ERR_DATAPLANE_EXITED";
    case AXON_ERR_INTERNAL: return "AXON_ERR_INTERNAL";
    default: return "AXON_ERR_UNKNOWN";
  }
}

int axon_worker_attach_fd(int fd, uint64_t expected_generation, axon_worker** out) {
  if (out == nullptr) {
    if (fd >= 0) close(fd);  // ownership was promised even on failure
    return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_attach_fd: out must not be NULL");
  }
  *out = nullptr;
  return guarded("axon_worker_attach_fd", [&] { return adopt(sdk::Worker::attach(fd, expected_generation), out); });
}

int axon_worker_connect(const char* socket_path, int timeout_ms, axon_worker** out) {
  if (out == nullptr || socket_path == nullptr || *socket_path == '\0') {
    return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_connect: pass the data plane's socket path and an out pointer");
  }
  *out = nullptr;
  return guarded("axon_worker_connect",
                 [&] { return adopt(sdk::Worker::connect(std::string(socket_path), timeout_ms), out); });
}

int axon_worker_from_environment(int timeout_ms, axon_worker** out) {
  if (out == nullptr) return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_from_environment: out must not be NULL");
  *out = nullptr;
  return guarded("axon_worker_from_environment", [&] { return adopt(sdk::Worker::from_environment(timeout_ms), out); });
}

void axon_worker_detach(axon_worker* worker) {
  if (worker == nullptr || worker->detached) return;
  worker->worker.detach();
  worker->detached = true;
}

void axon_worker_close(axon_worker* worker) {
  delete worker;  // ~Worker detaches if still attached and unmaps the segment
}

int axon_worker_receive_burst(axon_worker* worker, axon_request* out, uint32_t max) {
  if (worker == nullptr || out == nullptr) {
    return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_receive_burst: worker and out must not be NULL");
  }
  if (worker->detached) {
    return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_receive_burst: the worker is detached; attach again");
  }
  if (max > sdk::Worker::kMaxBurst) max = sdk::Worker::kMaxBurst;
  const std::uint32_t n = worker->worker.receive_burst(worker->burst, max);
  for (std::uint32_t i = 0; i < n; ++i) export_request(worker, worker->burst[i], out[i]);
  return int(n);
}

int axon_worker_wait(axon_worker* worker, const volatile int* stop) {
  if (worker == nullptr) return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_wait: worker must not be NULL");
  if (stop_raised(stop)) return 0;
  // The sleep ends on a wake, a signal (EINTR) or the policy's timeout, so a flag raised
  // meanwhile is seen within sleep_timeout_ns at the latest.
  const std::atomic<bool> never{false};
  if (worker->worker.wait_for_requests(&never)) return 1;
  if (worker->worker.dataplane_exited()) {
    return fail(AXON_ERR_DATAPLANE_EXITED, "the data plane exited; no request will arrive on this segment");
  }
  return 0;
}

int axon_worker_loan(axon_worker* worker, uint32_t size, axon_buffer* out) {
  if (worker == nullptr || out == nullptr) {
    return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_loan: worker and out must not be NULL");
  }
  sdk::ReplyBuffer buffer;
  if (!worker->worker.try_loan(size, buffer)) {
    std::memset(out, 0, sizeof *out);
    return fail(AXON_ERR_NO_LOAN,
                "no loaned buffer of %u bytes is available right now; reply in place (axon_worker_in_place) if it "
                "fits, or flush so the data plane sees the replies and restocks the loans",
                size);
  }
  export_buffer(buffer, *out);
  return AXON_OK;
}

int axon_worker_in_place(axon_worker* worker, const axon_request* request, axon_buffer* out) {
  sdk::Request req;
  if (worker == nullptr || request == nullptr || out == nullptr || !import_request(worker, *request, req)) {
    return fail(AXON_ERR_INVALID_ARGUMENT,
                "axon_worker_in_place: pass a request received by this worker (its internal_ part is intact)");
  }
  export_buffer(worker->worker.in_place(req), *out);
  return AXON_OK;
}

int axon_worker_complete(axon_worker* worker, const axon_request* request, const axon_buffer* buffer, uint32_t length,
                         uint32_t status) {
  sdk::Request req;
  if (worker == nullptr || request == nullptr || buffer == nullptr || !import_request(worker, *request, req)) {
    return fail(AXON_ERR_INVALID_ARGUMENT,
                "axon_worker_complete: pass a request received by this worker and the buffer holding its reply");
  }
  if (buffer->data == nullptr) {
    return fail(AXON_ERR_INVALID_ARGUMENT,
                "axon_worker_complete: the buffer is empty; take one with axon_worker_loan or axon_worker_in_place");
  }
  if (length > buffer->capacity) {
    return fail(AXON_ERR_REPLY_TOO_LARGE, "reply of %u bytes exceeds its %u-byte buffer; loan a larger one", length,
                buffer->capacity);
  }
  if (status > AXON_REPLY_DEADLINE_EXCEEDED) {
    return fail(AXON_ERR_INVALID_ARGUMENT, "reply status %u is not an axon_reply_status", status);
  }
  if (!worker->worker.try_complete(req, import_buffer(*buffer), length, shm::ReplyStatus(status))) {
    return fail(AXON_ERR_AGAIN, "the reply ring is full; call axon_worker_flush() and complete again");
  }
  return AXON_OK;
}

int axon_worker_try_flush(axon_worker* worker) {
  if (worker == nullptr) return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_try_flush: worker must not be NULL");
  if (worker->worker.try_flush()) return AXON_OK;
  return fail(AXON_ERR_AGAIN, "the reply ring is full: the data plane has not caught up; flush again later");
}

int axon_worker_flush(axon_worker* worker, const volatile int* stop) {
  if (worker == nullptr) return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_flush: worker must not be NULL");
  if (flush_until(worker->worker, stop)) return AXON_OK;
  return fail(AXON_ERR_STOPPED, "stopped while replies were still queued (reply ring full)");
}

int axon_worker_run(axon_worker* worker, axon_handler_fn handler, void* user_data, const volatile int* stop) {
  if (worker == nullptr || handler == nullptr || stop == nullptr) {
    return fail(AXON_ERR_INVALID_ARGUMENT,
                "axon_worker_run: worker, handler and stop must not be NULL (stop is how the loop ends)");
  }
  if (worker->detached) return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_run: the worker is detached");
  sdk::Worker& w = worker->worker;
  sdk::Request* burst = worker->burst;
  axon_request* requests = worker->run_burst;
  while (!stop_raised(stop)) {
    const std::uint32_t n = w.receive_burst(burst, sdk::Worker::kMaxBurst);
    if (n == 0) {
      const std::atomic<bool> never{false};
      if (!w.wait_for_requests(&never) && w.dataplane_exited()) {
        return fail(AXON_ERR_DATAPLANE_EXITED, "the data plane exited; no request will arrive on this segment");
      }
      continue;
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      export_request(worker, burst[i], requests[i]);
      axon_reply reply;
      std::memset(&reply, 0, sizeof reply);
      const int rc = handler(worker, &requests[i], &reply, user_data);
      sdk::ReplyBuffer buffer = import_buffer(reply.buffer);
      std::uint32_t length = reply.length;
      shm::ReplyStatus status = shm::ReplyStatus(reply.status);
      // Every request gets exactly one reply. A failed reply stays in the loaned buffer if
      // the handler took one, so that loan goes back to the data plane with it.
      if (rc != 0 || reply.status > AXON_REPLY_DEADLINE_EXCEEDED) {
        status = shm::ReplyStatus::handler_error;
        length = 0;
      } else if (length > 0 && (!buffer.valid() || length > buffer.capacity)) {
        // No buffer for a non-empty reply, or a reply longer than its buffer.
        status = shm::ReplyStatus::reply_too_large;
        length = 0;
      }
      if (!buffer.valid()) buffer = w.in_place(burst[i]);
      if (!w.try_complete(burst[i], buffer, length, status)) {
        if (!flush_until(w, stop) || !w.try_complete(burst[i], buffer, length, status)) {
          // Stopping with the reply ring full: the data plane reports the rest as lost.
          return AXON_OK;
        }
      }
    }
    if (!flush_until(w, stop)) return AXON_OK;
  }
  (void)flush_until(w, stop);
  return AXON_OK;
}

int axon_worker_set_wait_policy(axon_worker* worker, uint32_t spin_min, uint32_t spin_max, uint64_t sleep_timeout_ns) {
  if (worker == nullptr || spin_min == 0 || spin_max < spin_min) {
    return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_set_wait_policy: need a worker and 0 < spin_min <= spin_max");
  }
  sdk::WaitPolicy policy;
  policy.spin_min = spin_min;
  policy.spin_max = spin_max;
  policy.sleep_timeout_ns = sleep_timeout_ns;
  worker->worker.set_wait_policy(policy);
  return AXON_OK;
}

int axon_worker_set_background_every(axon_worker* worker, uint32_t every) {
  if (worker == nullptr || every > sdk::kMaxBackgroundEvery) {
    return fail(AXON_ERR_INVALID_ARGUMENT,
                "axon_worker_set_background_every: need a worker and every <= %u (0 = strict priority)",
                sdk::kMaxBackgroundEvery);
  }
  sdk::SchedulingPolicy policy;
  policy.background_every = every;
  worker->worker.set_scheduling_policy(policy);
  return AXON_OK;
}

int axon_request_trace(const axon_request* request, axon_trace_context* out) {
  shm::Descriptor meta{};
  if (request == nullptr || out == nullptr || !meta_of(*request, meta)) {
    return fail(AXON_ERR_INVALID_ARGUMENT,
                "axon_request_trace: pass a request from axon_worker_receive_burst and "
                "a non-NULL out");
  }
  const sdk::TraceContext t = sdk::trace_context(meta);
  std::memset(out, 0, sizeof *out);
  std::memcpy(out->trace_id, t.trace_id.data(), sizeof out->trace_id);
  std::memcpy(out->parent_span_id, t.parent_span_id.data(), sizeof out->parent_span_id);
  std::memcpy(out->span_id, t.span_id.data(), sizeof out->span_id);
  out->flags = t.flags;
  out->sampled = t.sampled() ? 1u : 0u;
  out->valid = t.valid() ? 1u : 0u;
  return out->valid;
}

int axon_request_traceparent(const axon_request* request, char* out, size_t size) {
  return write_traceparent("axon_request_traceparent", request, out, size, sdk::request_traceparent);
}

int axon_request_handler_traceparent(const axon_request* request, char* out, size_t size) {
  return write_traceparent("axon_request_handler_traceparent", request, out, size, sdk::span_traceparent);
}

int axon_worker_get_stats(const axon_worker* worker, axon_worker_stats* out) {
  if (worker == nullptr || out == nullptr) {
    return fail(AXON_ERR_INVALID_ARGUMENT, "axon_worker_get_stats: worker and out must not be NULL");
  }
  const sdk::WorkerStats& s = worker->worker.stats();
  std::memset(out, 0, sizeof *out);
  out->received = s.received;
  out->completed = s.completed;
  out->loan_failures = s.loan_failures;
  out->reply_ring_full = s.reply_ring_full;
  out->sleeps = s.sleeps;
  out->generation = worker->worker.generation();
  out->worker_id = worker->worker.worker_id();
  out->hugepages = worker->worker.backing() == shm::SegmentBacking::hugetlb_2m ? 1u : 0u;
  out->interactive = s.interactive;
  out->background = s.background;
  out->deadline_expired = s.deadline_expired;
  out->background_forced = s.background_forced;
  out->background_every = worker->worker.scheduling_policy().background_every;
  return AXON_OK;
}

}  // extern "C"
