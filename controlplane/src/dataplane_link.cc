// DataplaneLink: control socket, table pushes and the stats segment (see dataplane_link.h).
#include "dataplane_link.h"

#include "axon/common/log.h"

namespace axon::controlplane {
namespace {
constexpr const char* kLog = "controlplane";
namespace dpc = dataplane::control;
}  // namespace

void DataplaneLink::drop(const std::string& why) {
  if (connected_) {
    AXON_LOG_WARN(kLog, "lost the data plane link: %s; it keeps its last tables, reconnecting", why.c_str());
  }
  client_.reset();
  connected_ = false;
  last_error_ = why;
}

DataplaneLink::Event DataplaneLink::refresh() {
  const auto now = std::chrono::steady_clock::now();
  if (!client_) {
    if (now < next_attempt_) return Event::none;
    next_attempt_ = now + options_.reconnect_interval;
    auto connected = dpc::ControlClient::connect(options_.run_dir, options_.call_timeout_ms);
    if (!connected) {
      if (last_error_ != connected.message()) {
        AXON_LOG_WARN(kLog, "data plane: %s", connected.message().c_str());
        last_error_ = connected.message();
      }
      return Event::none;
    }
    client_.emplace(std::move(connected).value());
  }
  auto hello = client_->hello();
  if (!hello) {
    drop(hello.message());
    return Event::none;
  }
  const bool first = !connected_;
  const bool restarted = pid_ != 0 && pid_ != hello->pid;
  connected_ = true;
  hello_ = hello.value();
  slots_.clear();
  for (const auto& slot : hello_.slots) slots_[slot.name] = slot;
  if (!first && !restarted) return Event::none;
  if (restarted) ++restarts_seen_;
  AXON_LOG_INFO(kLog, "data plane %s: pid %d, %s (%s %s), %zu slot(s), tables v%llu",
                restarted ? "restarted" : "connected", hello_.pid, hello_.interface.c_str(), hello_.backend.c_str(),
                hello_.mode.c_str(), hello_.slots.size(), static_cast<unsigned long long>(hello_.table_version));
  pid_ = hello_.pid;
  last_error_.clear();
  // A new data plane process has none of our tables; the same one (we restarted) has them,
  // but re-pushing is idempotent and cheap.
  applied_.reset();
  map_stats();
  return restarted ? Event::restarted : Event::connected;
}

void DataplaneLink::map_stats() {
  stats_.reset();
  auto opened = dataplane::StatsReader::open(options_.run_dir + "/dataplane.stats");
  if (!opened) {
    AXON_LOG_WARN(kLog, "data plane stats: %s", opened.message().c_str());
    return;
  }
  stats_.emplace(std::move(opened).value());
}

const dpc::SlotInfo* DataplaneLink::slot(const std::string& name) const {
  auto it = slots_.find(name);
  return it == slots_.end() ? nullptr : &it->second;
}

bool DataplaneLink::needs_push(const dpc::Tables& tables) const {
  return !applied_ || applied_->tenants != tables.tenants || applied_->agents != tables.agents;
}

DataplaneLink::Push DataplaneLink::push(const dpc::Tables& tables) {
  if (!client_ || !connected_) return Push::lost;
  auto applied = client_->apply(tables);
  if (!applied) {
    if (applied.code() == dpc::ControlError::rejected) {
      // Our own tables were refused: a bug or a slot that vanished. The data plane keeps its
      // last good tables; say why, and do not hammer it with the same refused tables.
      ++rejected_pushes_;
      AXON_LOG_ERROR(kLog, "data plane rejected tables v%llu: %s", static_cast<unsigned long long>(tables.version),
                     applied.message().c_str());
      applied_ = tables;
      return Push::rejected;
    }
    drop(applied.message());
    return Push::lost;
  }
  applied_ = tables;
  AXON_LOG_DEBUG(kLog, "tables v%llu applied", static_cast<unsigned long long>(tables.version));
  return Push::applied;
}

bool DataplaneLink::grant(const std::string& slot, pid_t pid) {
  if (!client_ || !connected_) return false;
  auto granted = client_->grant(slot, std::int32_t(pid));
  if (granted) return true;
  AXON_LOG_WARN(kLog, "data plane: grant of slot %s to pid %d failed: %s", slot.c_str(), int(pid),
                granted.message().c_str());
  if (granted.code() == dpc::ControlError::not_running || granted.code() == dpc::ControlError::io_error) {
    drop(granted.message());
  }
  return false;
}

std::string DataplaneLink::invalidate_cache(std::uint32_t agent_id) {
  if (!client_ || !connected_) return "no data plane is linked (is axon-dataplane running?)";
  auto done = client_->invalidate_cache(agent_id);
  if (done) return {};
  if (done.code() == dpc::ControlError::not_running || done.code() == dpc::ControlError::io_error) {
    drop(done.message());
  }
  return done.message();
}

void DataplaneLink::fill(DataplaneStatus& d) const {
  d.connected = connected_;
  if (connected_) {
    d.pid = hello_.pid;
    d.backend = hello_.backend;
    d.mode = hello_.mode;
    d.interface = hello_.interface;
    d.table_version = hello_.table_version;
  }
  if (!stats_) return;
  // Ready means a live, serving process: a killed data plane leaves its ready flag set in the
  // file, but no longer holds the file's lock (issue 11 item 12).
  d.ready = connected_ && stats_->ready();
  d.heartbeat_age_ms = stats_->heartbeat_age_ms();
  const auto totals = stats_->totals();
  d.rx_frames = totals.rx_frames;
  d.requests = totals.requests;
  d.responses = totals.responses;
  d.busy_sent = totals.busy_sent;
  d.errors_sent = totals.errors();
  for (std::size_t r = 1; r < protocol::kReasonCount; ++r) {
    d.drops += totals.drops[r];
    if (protocol::Reason(r) != protocol::Reason::pass_not_axp) d.drops += stats_->xdp(protocol::Reason(r));
  }
}

}  // namespace axon::controlplane
