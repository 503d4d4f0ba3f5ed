// The shared open-loop core of the broker drivers: schedule, matching, histograms, JSON report.
#include "openloop.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "axon/common/clock.h"
#include "axon/common/cpu.h"

namespace axon::bench {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) {
  g_stop.store(true, std::memory_order_relaxed);
}

constexpr std::size_t kStamp = 16;

nlohmann::json latency_json(const loadgen::LatencyHistogram& h) {
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e3; };
  // Points of the latency CDF (percentile, µs) for the suite's CDF plot, as axon-loadgen writes them.
  nlohmann::json cdf = nlohmann::json::array();
  for (double p : {0.0,  1.0,  5.0,  10.0, 20.0, 30.0, 40.0, 50.0,  60.0,  70.0, 80.0,
                   90.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0})
    cdf.push_back({p, us(h.percentile_ns(p))});
  return {{"count", h.count()},
          {"cdf", cdf},
          {"min", us(h.min_ns())},
          {"mean", h.mean_ns() / 1e3},
          {"p50", us(h.percentile_ns(50))},
          {"p90", us(h.percentile_ns(90))},
          {"p99", us(h.percentile_ns(99))},
          {"p99_9", us(h.percentile_ns(99.9))},
          {"max", us(h.max_ns())}};
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_flag() {
  return g_stop.load(std::memory_order_relaxed);
}

void pin_or_warn(int cpu, const char* who) {
  if (cpu < 0) return;
  if (auto pinned = pin_this_thread(cpu); !pinned) std::fprintf(stderr, "%s: %s\n", who, pinned.message().c_str());
}

double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

OpenLoop::OpenLoop(const DriverOptions& options) : o_(options) {
  if (o_.payload_bytes < kStamp) o_.payload_bytes = kStamp;
  start_ = monotonic_ns() + 10'000'000;
  measure_start_ = start_ + static_cast<std::uint64_t>(o_.warmup_s * 1e9);
  measure_end_ = measure_start_ + static_cast<std::uint64_t>(o_.duration_s * 1e9);
  drain_end_ = measure_end_ + std::uint64_t{o_.timeout_ms} * 1'000'000ull;
  schedule_stop_ = measure_end_;
  schedule_ = std::make_unique<loadgen::PoissonSchedule>(o_.rate, o_.seed, start_);
  next_ = schedule_->next();
  // One byte per request that can be sent: the schedule's mean count plus generous slack.
  double expected = o_.rate * (o_.warmup_s + o_.duration_s);
  answered_.assign(static_cast<std::size_t>(expected * 1.2 + 10 * std::sqrt(expected) + 4096), 0);
}

void OpenLoop::fill(std::uint8_t* buf, std::uint64_t seq, std::uint64_t intended_ns) const noexcept {
  std::memcpy(buf, &seq, 8);
  std::memcpy(buf + 8, &intended_ns, 8);
}

std::uint64_t OpenLoop::advance(std::uint64_t now, bool sent_ok) noexcept {
  std::uint64_t intended = next_;
  if (measured(intended)) {
    if (sent_ok) {
      ++sent_;
      send_lag_.record(now > intended ? now - intended : 0);
    } else {
      ++send_errors_;
    }
  }
  std::uint64_t seq = seq_++;
  next_ = schedule_->next();
  if (next_ >= measure_end_ || seq_ >= answered_.size() || stop_requested()) {
    done_ = true;
    schedule_stop_ = std::min(next_, measure_end_);
  }
  return seq;
}

bool OpenLoop::stop_requested() const noexcept {
  return stop_flag();
}

void OpenLoop::on_reply(std::span<const std::uint8_t> payload, std::uint64_t now) noexcept {
  if (payload.size() < kStamp) {
    ++unmatched_;
    return;
  }
  std::uint64_t seq, intended;
  std::memcpy(&seq, payload.data(), 8);
  std::memcpy(&intended, payload.data() + 8, 8);
  if (seq >= answered_.size() || answered_[seq] != 0) {
    ++unmatched_;
    return;
  }
  answered_[seq] = 1;
  if (!measured(intended)) return;
  std::uint64_t latency = now > intended ? now - intended : 0;
  if (latency > std::uint64_t{o_.timeout_ms} * 1'000'000ull) {
    ++late_;
    return;
  }
  ++responses_;
  latency_.record(latency);
  if (payload.size() != o_.payload_bytes) ++payload_mismatch_;
}

int OpenLoop::finish(double cpu_s, double wall_s, std::uint64_t tx_packets, std::uint64_t rx_packets) {
  const std::uint64_t packets = tx_packets + rx_packets;
  double measured_s = schedule_stop_ > measure_start_ ? static_cast<double>(schedule_stop_ - measure_start_) / 1e9 : 0;
  std::uint64_t lost = sent_ > responses_ ? sent_ - responses_ : 0;
  double lag_p99 = static_cast<double>(send_lag_.percentile_ns(99)) / 1e3;
  // The same verdicts as axon-loadgen (loadgen.h): behind when most sends are late, stalled when
  // a host stall made a few percent of them very late.
  double lag_p90 = static_cast<double>(send_lag_.percentile_ns(90)) / 1e3;
  double stall_share = send_lag_.fraction_at_or_above(1'000'000);
  bool behind = false;
  std::string why;
  if (send_lag_.count() > 0 && lag_p90 > o_.max_lag_us) {
    behind = true;
    why = "send lag p90 " + std::to_string(static_cast<long>(lag_p90)) + " us > " +
          std::to_string(static_cast<long>(o_.max_lag_us)) + " us";
  } else if (send_errors_ > sent_ / 1000) {
    behind = true;
    why = std::to_string(send_errors_) + " sends failed";
  }
  nlohmann::json j = {
      {"tool", "axon-bench-" + o_.peer},
      {"schema", 1},
      {"options",
       {{"rate", o_.rate},
        {"duration_s", o_.duration_s},
        {"warmup_s", o_.warmup_s},
        {"payload_bytes", o_.payload_bytes},
        {"timeout_ms", o_.timeout_ms},
        {"cpu", o_.cpu},
        {"seed", o_.seed},
        {"max_lag_us", o_.max_lag_us}}},
      {"transport", o_.transport},
      {"offered_rps", o_.rate},
      {"sent_rps", measured_s > 0 ? static_cast<double>(sent_) / measured_s : 0},
      {"achieved_rps", measured_s > 0 ? static_cast<double>(responses_) / measured_s : 0},
      {"measured_s", measured_s},
      {"sent", sent_},
      {"replies", responses_ + late_},
      {"responses", responses_},
      {"busy", 0},
      {"errors", 0},
      {"lost", lost},
      {"late", late_},
      {"invalid", 0},
      {"unmatched", unmatched_},
      {"payload_mismatch", payload_mismatch_},
      {"send_errors", send_errors_},
      {"latency_us", latency_json(latency_)},
      {"send_lag_us", latency_json(send_lag_)},
      {"load_behind", behind},
      {"load_behind_reason", why},
      {"stall_share", stall_share},
      {"stalled", stall_share >= 0.005},
      {"cpu_s", cpu_s},
      {"wall_s", wall_s},
      {"packets", packets},
      {"tx_packets", tx_packets},
      {"rx_packets", rx_packets},
      {"cpu_ns_per_packet", packets ? cpu_s * 1e9 / static_cast<double>(packets) : 0.0},
  };
  if (!o_.json_file.empty()) {
    std::ofstream out(o_.json_file);
    out << j.dump(2) << '\n';
    if (!out) {
      std::fprintf(stderr, "axon-bench-%s: cannot write %s\n", o_.peer.c_str(), o_.json_file.c_str());
      return 1;
    }
  }
  std::printf(
      "offered=%.0f/s achieved=%.0f/s | ok=%llu lost=%llu late=%llu unmatched=%llu | latency us p50=%.1f "
      "p99=%.1f p99.9=%.1f | sender lag p99=%.1fus%s%s\n",
      o_.rate, j["achieved_rps"].get<double>(), static_cast<unsigned long long>(responses_),
      static_cast<unsigned long long>(lost), static_cast<unsigned long long>(late_),
      static_cast<unsigned long long>(unmatched_), static_cast<double>(latency_.percentile_ns(50)) / 1e3,
      static_cast<double>(latency_.percentile_ns(99)) / 1e3, static_cast<double>(latency_.percentile_ns(99.9)) / 1e3,
      lag_p99, behind ? " | LOAD SIDE FELL BEHIND: " : "", why.c_str());
  return 0;
}

}  // namespace axon::bench
