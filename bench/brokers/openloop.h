// The open-loop method of axon-loadgen, for peers that do not speak AXP (NATS, ZeroMQ): the same
// Poisson schedule fixed ahead of time, latency charged from each request's intended send time,
// the same histogram, the same report fields and the same "the load side fell behind" verdict, so
// bench/run.sh reads every peer's JSON alike.
//
// Each request's payload starts with its sequence number and intended send time (16 bytes; the
// rest is filler up to --payload), and the peers echo it, so a reply is matched and timed from
// its own bytes. A reply after the timeout, a duplicate or an unknown sequence is not a response.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "axon/loadgen/histogram.h"
#include "axon/loadgen/schedule.h"

namespace axon::bench {

struct DriverOptions {
  double rate = 10'000;
  double duration_s = 5;
  double warmup_s = 1;
  std::size_t payload_bytes = 64;  // at least 16 (sequence + intended time)
  unsigned timeout_ms = 500;
  int cpu = -1;
  std::uint64_t seed = 1;
  double max_lag_us = 100;
  std::string json_file;
  std::string peer;  // "nats", "zmq": written into the report
  std::string transport;
};

class OpenLoop {
 public:
  explicit OpenLoop(const DriverOptions& options);

  // Fills buf (payload_bytes) for the request with this sequence and intended time.
  void fill(std::uint8_t* buf, std::uint64_t seq, std::uint64_t intended_ns) const noexcept;
  [[nodiscard]] std::size_t payload_bytes() const noexcept { return o_.payload_bytes; }

  // The schedule, for the sending loop: the next intended time, or 0 once the window is over.
  [[nodiscard]] std::uint64_t next_intended() const noexcept { return next_; }
  // The sequence number of the request at next_intended().
  [[nodiscard]] std::uint64_t next_seq() const noexcept { return seq_; }
  // Records that the request with the current intended time was sent at `now` (or failed to be
  // sent, sent_ok = false), and advances the schedule. Returns its sequence number.
  std::uint64_t advance(std::uint64_t now, bool sent_ok) noexcept;
  [[nodiscard]] bool schedule_done() const noexcept { return done_; }
  [[nodiscard]] std::uint64_t end_ns() const noexcept { return drain_end_; }  // window end + timeout

  // A reply's payload arrived at `now`. Thread: the receiving one.
  void on_reply(std::span<const std::uint8_t> payload, std::uint64_t now) noexcept;

  // Writes the JSON report (and prints a one-line summary); returns the process exit status.
  int finish(double cpu_s, double wall_s, std::uint64_t tx_packets, std::uint64_t rx_packets);

  [[nodiscard]] bool stop_requested() const noexcept;

 private:
  bool measured(std::uint64_t intended) const noexcept { return intended >= measure_start_ && intended < measure_end_; }

  DriverOptions o_;
  std::unique_ptr<loadgen::PoissonSchedule> schedule_;
  std::uint64_t start_ = 0, measure_start_ = 0, measure_end_ = 0, drain_end_ = 0;
  std::uint64_t next_ = 0;
  std::uint64_t seq_ = 0;
  bool done_ = false;
  std::uint64_t schedule_stop_ = 0;
  // Sender side.
  std::uint64_t sent_ = 0, send_errors_ = 0;
  loadgen::LatencyHistogram send_lag_;
  // Receiver side.
  std::vector<std::uint8_t> answered_;
  std::uint64_t responses_ = 0, late_ = 0, unmatched_ = 0, payload_mismatch_ = 0;
  loadgen::LatencyHistogram latency_;
};

// Pins the calling thread (and threads it creates later) to cpu, if cpu >= 0.
void pin_or_warn(int cpu, const char* who);
// Process CPU time (user + system), seconds.
[[nodiscard]] double process_cpu_s();
// Installs SIGINT/SIGTERM handlers that set the flag OpenLoop::stop_requested() reads.
void install_stop_handlers();
[[nodiscard]] bool stop_flag();

}  // namespace axon::bench
