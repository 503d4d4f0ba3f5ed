// TraceStore: drains the data plane's trace rings into the control plane's bounded store of
// traces (see trace_store.h).
#include "trace_store.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>

#include "axon/common/log.h"
#include "axon/controlplane/api_server.h"

namespace axon::controlplane {
namespace {

constexpr const char* kLog = "traces";

std::int64_t clock_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string id_hex(std::uint64_t id) {
  std::uint8_t bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = std::uint8_t(id >> (56 - 8 * i));
  return to_hex(bytes, 8);
}

TraceSpan span(const char* name, std::string id, std::string parent, SpanKind kind, std::uint64_t start,
               std::uint64_t end) {
  return TraceSpan{name, std::move(id), std::move(parent), kind, start, end};
}

}  // namespace

std::string to_hex(const std::uint8_t* bytes, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

TraceEntry make_trace_entry(const dataplane::SpanRecord& r, std::int64_t realtime_offset_ns,
                            const std::function<std::uint64_t()>& next_id) {
  TraceEntry e;
  e.trace_id = to_hex(r.trace_id, 16);
  e.request_id = r.request_id;
  e.tenant_id = r.tenant_id;
  e.agent_id = r.agent_id;
  e.lcore = r.lcore;
  e.klass = r.klass == std::uint8_t(shm::PriorityClass::interactive) ? "interactive" : "background";
  e.sampled_by = r.sampled_by == std::uint8_t(dataplane::SampledBy::rate) ? "rate" : "flag";
  e.trace_flags = r.trace_flags;
  std::uint64_t previous = 0;
  for (std::size_t h = 0; h < dataplane::kTraceHops; ++h) {
    // Each hop at or after the one before (docs/observability.md, "Hops and stages").
    previous = std::max(previous, r.hop_ns[h]);
    e.hop_unix_ns[h] = std::uint64_t(std::int64_t(previous) + realtime_offset_ns);
  }
  const std::string request_span = to_hex(r.parent_span_id, 8);
  const std::string appliance = to_hex(r.appliance_span_id, 8);
  const auto& hop = e.hop_unix_ns;
  using namespace dataplane;
  e.spans.push_back(span("appliance", appliance, request_span, SpanKind::server, hop[kTraceRx], hop[kTraceTx]));
  e.spans.push_back(
      span("ingress", id_hex(next_id()), appliance, SpanKind::internal, hop[kTraceRx], hop[kTraceEnqueue]));
  e.spans.push_back(
      span("queue", id_hex(next_id()), appliance, SpanKind::internal, hop[kTraceEnqueue], hop[kTraceWorkerDequeue]));
  e.spans.push_back(
      span("return", id_hex(next_id()), appliance, SpanKind::internal, hop[kTraceWorkerDone], hop[kTraceReplyDequeue]));
  e.spans.push_back(
      span("egress", id_hex(next_id()), appliance, SpanKind::internal, hop[kTraceReplyDequeue], hop[kTraceTx]));
  e.spans.push_back(span("handler", to_hex(r.handler_span_id, 8), request_span, SpanKind::internal,
                         hop[kTraceWorkerDequeue], hop[kTraceWorkerDone]));
  return e;
}

TraceStore::TraceStore(Options options, Resolver resolver, Sink sink)
    : options_(std::move(options)),
      resolver_(std::move(resolver)),
      sink_(std::move(sink)),
      random_(std::random_device{}()) {
  if (options_.capacity == 0) options_.capacity = 1;
}

TraceStore::~TraceStore() {
  {
    std::lock_guard lock(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TraceStore::start() {
  thread_ = std::thread([this] { run(); });
}

void TraceStore::run() {
  std::unique_lock lock(stop_mutex_);
  while (!stop_) {
    lock.unlock();
    poll();
    lock.lock();
    stop_cv_.wait_for(lock, options_.interval, [this] { return stop_; });
  }
}

// A restarted data plane publishes a new file under the same name (a rename: a new inode);
// the old mapping stays valid, so what it still holds is drained before it is let go.
void TraceStore::reopen_if_needed() {
  struct stat st {};
  const bool exists = ::stat(options_.path.c_str(), &st) == 0;
  if (reader_ && exists && std::uint64_t(st.st_ino) == reader_->inode()) return;
  if (!exists) return;  // keep the old one (if any) until a new file appears
  auto opened = dataplane::TraceReader::open(options_.path);
  if (!opened) {
    if (opened.message() != open_error_) AXON_LOG_WARN(kLog, "%s", opened.message().c_str());
    open_error_ = opened.message();
    return;
  }
  open_error_.clear();
  if (reader_) {
    std::lock_guard lock(mutex_);
    dropped_base_ += reader_->dropped();
  }
  reader_.emplace(std::move(opened).value());
  AXON_LOG_INFO(kLog, "reading traces from %s (%u lcore(s))", options_.path.c_str(), reader_->lcore_count());
}

std::size_t TraceStore::poll() {
  std::vector<dataplane::SpanRecord> records;
  auto take = [&](dataplane::TraceReader& reader) {
    reader.drain([&](const dataplane::SpanRecord& r) { records.push_back(r); });
  };
  const std::uint64_t old_inode = reader_ ? reader_->inode() : 0;
  if (reader_) take(*reader_);
  reopen_if_needed();
  if (reader_ && reader_->inode() != old_inode) take(*reader_);
  const std::int64_t offset = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
  std::vector<TraceEntry> made;
  made.reserve(records.size());
  auto next_id = [this] {
    std::uint64_t id = 0;
    while (id == 0) id = random_();
    return id;
  };
  for (const auto& r : records) {
    made.push_back(make_trace_entry(r, offset, next_id));
    if (resolver_) resolver_(made.back());
  }
  {
    std::lock_guard lock(mutex_);
    linked_ = reader_.has_value();
    dropped_ = dropped_base_ + (reader_ ? reader_->dropped() : 0);
    for (const auto& e : made) {
      entries_.push_back(e);
      ++stored_;
      spans_ += e.spans.size();
      if (entries_.size() > options_.capacity) {
        entries_.pop_front();
        ++evicted_;
      }
    }
  }
  if (sink_) {
    for (const auto& e : made) sink_(e);
  }
  return records.size();
}

std::vector<TraceEntry> TraceStore::recent(const TraceQuery& q) const {
  std::vector<TraceEntry> out;
  std::lock_guard lock(mutex_);
  for (auto it = entries_.rbegin(); it != entries_.rend() && out.size() < q.limit; ++it) {
    if (q.trace_id && it->trace_id != *q.trace_id) continue;
    if (q.agent && it->agent != *q.agent) continue;
    if (q.tenant && it->tenant != *q.tenant) continue;
    out.push_back(*it);
  }
  return out;
}

std::vector<TraceEntry> TraceStore::find(const std::string& trace_id) const {
  std::vector<TraceEntry> out;
  std::lock_guard lock(mutex_);
  for (const auto& e : entries_) {
    if (e.trace_id == trace_id) out.push_back(e);
  }
  return out;
}

std::string TraceStore::metrics() const {
  std::lock_guard lock(mutex_);
  MetricsWriter m;
  m.family("axon_trace_ring_dropped_total", "counter",
           "Sampled traces the data plane dropped because its lcore's trace ring was full (the control plane "
           "drains every 100 ms).")
      .sample(double(dropped_));
  m.family("axon_traces_stored_total", "counter", "Traced requests the control plane took from the trace rings.")
      .sample(double(stored_));
  m.family("axon_trace_spans_stored_total", "counter", "Spans made from the traced requests taken (6 each).")
      .sample(double(spans_));
  m.family("axon_traces_evicted_total", "counter",
           "Traced requests pushed out of the trace store by newer ones ([tracing] store_traces).")
      .sample(double(evicted_));
  m.family("axon_traces_kept", "gauge", "Traced requests in the trace store (GET /v1/traces).")
      .sample(double(entries_.size()));
  m.family("axon_trace_file_mapped", "gauge", "1 while the control plane reads the data plane's trace file.")
      .sample(linked_ ? 1 : 0);
  return m.str();
}

}  // namespace axon::controlplane
