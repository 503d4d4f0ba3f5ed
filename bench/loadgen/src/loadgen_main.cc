// axon-loadgen: command line, signal handling and the JSON/text report around the open-loop engine.
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "axon/loadgen/id_list.h"

#include "loadgen.h"

namespace {

namespace p = axon::protocol;
using axon::loadgen::LatencyHistogram;
using axon::loadgen::LoadgenOptions;
using axon::loadgen::LoadgenReport;

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) {
  g_stop.store(true);
}

double us(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e3;
}

// Points of the latency CDF (percentile, µs) for the suite's CDF plot.
nlohmann::json cdf_json(const LatencyHistogram& h) {
  nlohmann::json points = nlohmann::json::array();
  for (double p : {0.0,  1.0,  5.0,  10.0, 20.0, 30.0, 40.0, 50.0,  60.0,  70.0, 80.0,
                   90.0, 95.0, 97.0, 98.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0})
    points.push_back({p, us(h.percentile_ns(p))});
  return points;
}

nlohmann::json latency_json(const LatencyHistogram& h) {
  return {{"count", h.count()},
          {"cdf", cdf_json(h)},
          {"min", us(h.min_ns())},
          {"mean", h.mean_ns() / 1e3},
          {"p50", us(h.percentile_ns(50))},
          {"p90", us(h.percentile_ns(90))},
          {"p99", us(h.percentile_ns(99))},
          {"p99_9", us(h.percentile_ns(99.9))},
          {"max", us(h.max_ns())}};
}

nlohmann::json errors_json(const std::array<std::uint64_t, 16>& by_code) {
  nlohmann::json errors = nlohmann::json::object();
  for (std::size_t c = 0; c < by_code.size(); ++c) {
    if (by_code[c] == 0) continue;
    errors[c < p::kErrorCodeCount ? p::to_string(static_cast<p::ErrorCode>(c)) : "other"] = by_code[c];
  }
  return errors;
}

// One priority class's figures; rates over the measured window.
nlohmann::json class_json(const axon::loadgen::ClassReport& c, double offered, double measured_s) {
  auto per_s = [measured_s](std::uint64_t n) { return measured_s > 0 ? static_cast<double>(n) / measured_s : 0.0; };
  return {{"offered_rps", offered},
          {"sent", c.sent},
          {"sent_rps", per_s(c.sent)},
          {"responses", c.responses},
          {"achieved_rps", per_s(c.responses)},
          {"busy", c.busy},
          {"busy_rps", per_s(c.busy)},
          {"errors", c.errors},
          {"errors_by_name", errors_json(c.errors_by_code)},
          {"lost", c.lost},
          {"late", c.late},
          {"send_dropped", c.send_dropped},
          {"latency_us", latency_json(c.latency)},
          {"send_lag_us", latency_json(c.send_lag)}};
}

nlohmann::json report_json(const LoadgenReport& r, const LoadgenOptions& o) {
  nlohmann::json errors = errors_json(r.errors_by_code);
  nlohmann::json malformed = nlohmann::json::object();
  for (std::size_t k = 0; k < r.malformed_by_kind.size(); ++k)
    if (r.malformed_by_kind[k] != 0)
      malformed[to_string(static_cast<axon::loadgen::MalformedKind>(k))] = r.malformed_by_kind[k];
  return {
      {"tool", "axon-loadgen"},
      {"schema", 1},
      {"options",
       {{"target", o.target},
        {"bind", o.bind},
        {"rate", o.rate},
        {"duration_s", o.duration_s},
        {"warmup_s", o.warmup_s},
        {"payload_bytes", o.payload_bytes},
        {"tenants", o.tenants},
        {"agents_count", o.agents.size()},
        {"sessions", o.sessions},
        {"priority", p::to_string(o.priority)},
        {"deadline_us", o.deadline_us},
        {"bg_rate", o.bg_rate},
        {"bg_tenants", o.bg_tenants.empty() ? o.tenants : o.bg_tenants},
        {"bg_agents_count", o.bg_agents.empty() ? o.agents.size() : o.bg_agents.size()},
        {"bg_deadline_us", o.bg_deadline_us},
        {"flood", o.flood},
        {"spin", o.spin},
        {"timeout_ms", o.timeout_ms},
        {"threads", r.threads},
        {"cpu_send", o.cpu_send},
        {"cpu_recv", o.cpu_recv},
        {"malformed_ratio", o.malformed_ratio},
        {"seed", o.seed},
        {"xdp_dev", o.xdp_dev},
        {"xdp_queue", o.xdp_queue},
        {"max_lag_us", o.max_lag_us},
        {"max_datagram", o.max_datagram},
        {"payload_variants", o.payload_variants},
        {"retransmit_fraction", o.retransmit_fraction},
        {"retransmit_after_us", o.retransmit_after_us}}},
      {"transport", r.transport},
      {"load_behind", r.load_behind},
      {"load_behind_reason", r.load_behind_reason},
      {"stall_share", r.stall_share},
      {"stalled", r.stalled},
      {"cpu_s", r.cpu_s},
      {"wall_s", r.wall_s},
      {"packets", r.packets},
      {"tx_packets", r.tx_packets},
      {"rx_packets", r.rx_packets},
      {"cpu_ns_per_packet", r.packets ? r.cpu_s * 1e9 / static_cast<double>(r.packets) : 0.0},
      {"xsk",
       {{"rx_dropped", r.xsk.rx_dropped},
        {"rx_ring_full", r.xsk.rx_ring_full},
        {"rx_fill_ring_empty", r.xsk.rx_fill_ring_empty},
        {"tx_invalid", r.xsk.tx_invalid},
        {"tx_no_frame", r.xsk.tx_no_frame},
        {"rx_not_ours", r.xsk.rx_not_ours},
        {"kicks", r.xsk.kicks},
        {"kicks_busy", r.xsk.kicks_busy}}},
      {"offered_rps", r.offered_rps},
      {"sent_rps", r.sent_rps()},
      {"achieved_rps", r.achieved_rps()},
      {"measured_s", r.measured_s},
      {"sent", r.sent},
      {"replies", r.responses + r.busy + r.errors},
      {"responses", r.responses},
      {"busy", r.busy},
      {"errors", r.errors},
      {"errors_by_name", errors},
      {"lost", r.lost},
      {"late", r.late},
      {"invalid", r.invalid},
      {"unmatched", r.unmatched},
      {"duplicate_replies", r.duplicate_replies},
      {"retransmits", r.retransmits},
      {"retransmit_skipped", r.retransmit_skipped},
      {"segments",
       {{"request_segments", r.request_segments},
        {"request_segment_payload", r.request_segment_payload},
        {"reply_segments", r.reply_segments},
        {"incomplete_replies", r.incomplete_replies},
        {"reply_segment_duplicates", r.reply_segment_duplicates},
        {"reply_segment_mismatch", r.reply_segment_mismatch},
        {"reply_segment_offset", r.reply_segment_offset},
        {"reply_segments_untracked", r.reply_segments_untracked}}},
      {"malformed_replies", r.malformed_replies},
      {"trace_mismatch", r.trace_mismatch},
      {"payload_mismatch", r.payload_mismatch},
      {"send_errors", r.send_errors},
      {"send_dropped", r.send_dropped},
      {"malformed_sent", r.malformed_sent},
      {"malformed_by_kind", malformed},
      {"latency_us", latency_json(r.latency)},
      {"send_lag_us", latency_json(r.send_lag)},
      // By the priority class of each request sent: with --bg-rate, the two streams apart.
      {"classes",
       {{"interactive", class_json(r.classes[0], o.priority == p::Priority::interactive ? o.rate : 0.0, r.measured_s)},
        {"background",
         class_json(r.classes[1], (o.priority == p::Priority::background ? o.rate : 0.0) + o.bg_rate, r.measured_s)}}},
  };
}

}  // namespace

int main(int argc, char** argv) {
  LoadgenOptions o;
  std::vector<std::string> tenant_specs{"1"}, agent_specs{"1"}, bg_tenant_specs, bg_agent_specs;
  std::string json_file;
  CLI::App app{"axon-loadgen: open-loop AXP load generator (Poisson arrivals, latency from the intended send time)",
               "axon-loadgen"};
  app.add_option("--target", o.target, "Server HOST[:PORT] ([v6]:PORT for IPv6)")->capture_default_str();
  app.add_option("--rate", o.rate, "Offered load in requests/s")->capture_default_str();
  app.add_option("--duration", o.duration_s, "Measured seconds (at most 600)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, axon::loadgen::kMaxDurationS));
  app.add_option("--warmup", o.warmup_s, "Seconds of load before measuring")->capture_default_str();
  app.add_option("--payload", o.payload_bytes, "Payload bytes per request")->capture_default_str();
  app.add_option("--tenant", tenant_specs, "Tenant ids (repeatable; lists and ranges like 1,3-5)")
      ->capture_default_str();
  app.add_option("--agent", agent_specs, "Agent ids to spread requests over (repeatable; lists and ranges)")
      ->capture_default_str();
  app.add_option("--sessions", o.sessions, "Distinct session keys (0 = none)")->capture_default_str();
  // Parsed as text so --help and errors name the choices; the callback converts it to the enum.
  app.add_option_function<std::string>(
         "--priority",
         [&o](const std::string& name) {
           o.priority = name == "background" ? p::Priority::background : p::Priority::interactive;
         },
         "interactive (default) or background")
      ->check(CLI::IsMember({"interactive", "background"}));
  app.add_option("--deadline-us", o.deadline_us, "Deadline budget in each request (0 = none)");
  app.add_option("--bg-rate", o.bg_rate,
                 "Mixed classes: a second Poisson stream of background-class requests at this rate beside "
                 "--rate's (0 = none); the report splits every figure by class")
      ->capture_default_str();
  app.add_option("--bg-tenant", bg_tenant_specs, "Tenant ids of the background stream (default: --tenant's)");
  app.add_option("--bg-agent", bg_agent_specs, "Agent ids of the background stream (default: --agent's)");
  app.add_option("--bg-deadline-us", o.bg_deadline_us, "Deadline budget in each background request (0 = none)");
  app.add_flag("--flood", o.flood,
               "No schedule: send as fast as this process can, latency from each actual send (--rate only sizes "
               "the id ring: give the rate you expect)");
  app.add_flag("--spin", o.spin,
               "Never sleep between sends (a dedicated load cpu shared with other work wakes a sleeper late)");
  app.add_option("--timeout-ms", o.timeout_ms, "A request unanswered this long counts as lost")->capture_default_str();
  app.add_option("--cpu-send", o.cpu_send, "Pin the sender (or the single thread) to this CPU");
  app.add_option("--cpu-recv", o.cpu_recv, "Pin the receiver to this CPU");
  app.add_option("--threads", o.threads, "2: separate sender and receiver; 1: one thread does both")
      ->capture_default_str();
  app.add_option("--json", json_file, "Write the report as JSON to this file");
  app.add_flag("--live", o.live, "Print a line of figures every second");
  app.add_option("--bind", o.bind, "Source address");
  app.add_option("--malformed-ratio", o.malformed_ratio,
                 "Fraction of sends replaced by malformed datagrams (not expected to be answered)");
  app.add_option("--seed", o.seed, "Seed of the arrival schedule")->capture_default_str();
  app.add_option("--max-datagram", o.max_datagram,
                 "Largest datagram (path MTU budget); a larger request is sent as segments (docs/protocol.md §6)")
      ->capture_default_str();
  app.add_option("--payload-variants", o.payload_variants,
                 "Repeat this many distinct payloads (request i carries i mod N in its first bytes; 0 = all alike)")
      ->capture_default_str();
  app.add_option("--retransmit-fraction", o.retransmit_fraction,
                 "Send this fraction of the requests a second time, same request id and header (0..1)")
      ->capture_default_str();
  app.add_option("--retransmit-after-us", o.retransmit_after_us,
                 "How long after its intended send time a request is sent again")
      ->capture_default_str();
  app.add_option("--xdp-dev", o.xdp_dev,
                 "Send and receive through AF_XDP on this interface (the load side's own veth end; attaches "
                 "an XDP program there for the replies). IPv4 only");
  app.add_option("--xdp-queue", o.xdp_queue, "Queue of --xdp-dev")->capture_default_str();
  app.add_option("--dst-mac", o.dst_mac, "With --xdp-dev: the target's MAC (default: the neighbour table)");
  app.add_option("--xdp-frames", o.xdp_frames, "With --xdp-dev: UMEM frames (power of two)")->capture_default_str();
  app.add_option("--max-lag-us", o.max_lag_us,
                 "A run whose send lag p90 exceeds this is reported as load_behind (the load side fell behind)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // One core for both roles means one thread: two threads would only take turns on it.
  if (o.cpu_send >= 0 && o.cpu_send == o.cpu_recv) o.threads = 1;
  auto expand = [](const std::vector<std::string>& specs, const char* what, std::vector<std::uint32_t>& out) {
    out.clear();
    for (const auto& s : specs) {
      auto list = axon::loadgen::IdList::parse(s);
      if (!list) {
        std::fprintf(stderr, "axon-loadgen: --%s %s\n", what, list.message().c_str());
        return false;
      }
      auto ids = list->expand();
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return true;
  };
  if (!expand(tenant_specs, "tenant", o.tenants) || !expand(agent_specs, "agent", o.agents)) return 2;
  if (!expand(bg_tenant_specs, "bg-tenant", o.bg_tenants) || !expand(bg_agent_specs, "bg-agent", o.bg_agents)) return 2;

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  auto result = axon::loadgen::run_loadgen(o, g_stop);
  if (!result) {
    std::fprintf(stderr, "axon-loadgen: %s\n", result.message().c_str());
    return 2;
  }
  const LoadgenReport& r = result.value();
  nlohmann::json j = report_json(r, o);
  if (!json_file.empty()) {
    std::ofstream out(json_file);
    out << j.dump(2) << '\n';
    if (!out) {
      std::fprintf(stderr, "axon-loadgen: cannot write %s\n", json_file.c_str());
      return 1;
    }
  }
  const auto& lat = r.latency;
  std::printf(
      "offered=%.0f/s sent=%.0f/s achieved=%.0f/s over %.1fs | ok=%llu busy=%llu errors=%llu lost=%llu late=%llu "
      "invalid=%llu unmatched=%llu dup=%llu malformed_sent=%llu | latency us p50=%.1f p90=%.1f p99=%.1f p99.9=%.1f "
      "max=%.1f | "
      "sender lag p99=%.1fus | %.0f ns CPU/packet%s%s\n",
      r.offered_rps, r.sent_rps(), r.achieved_rps(), r.measured_s, static_cast<unsigned long long>(r.responses),
      static_cast<unsigned long long>(r.busy), static_cast<unsigned long long>(r.errors),
      static_cast<unsigned long long>(r.lost), static_cast<unsigned long long>(r.late),
      static_cast<unsigned long long>(r.invalid), static_cast<unsigned long long>(r.unmatched),
      static_cast<unsigned long long>(r.duplicate_replies), static_cast<unsigned long long>(r.malformed_sent),
      us(lat.percentile_ns(50)), us(lat.percentile_ns(90)), us(lat.percentile_ns(99)), us(lat.percentile_ns(99.9)),
      us(lat.max_ns()), us(r.send_lag.percentile_ns(99)),
      r.packets ? r.cpu_s * 1e9 / static_cast<double>(r.packets) : 0.0,
      r.load_behind ? " | LOAD SIDE FELL BEHIND: " : "", r.load_behind_reason.c_str());
  if (o.bg_rate > 0) {
    for (std::size_t c = 0; c < r.classes.size(); ++c) {
      const auto& k = r.classes[c];
      std::printf(
          "  %-11s sent=%llu ok=%llu busy=%llu errors=%llu lost=%llu | latency us p50=%.1f p99=%.1f p99.9=%.1f\n",
          c == 0 ? "interactive" : "background", static_cast<unsigned long long>(k.sent),
          static_cast<unsigned long long>(k.responses), static_cast<unsigned long long>(k.busy),
          static_cast<unsigned long long>(k.errors), static_cast<unsigned long long>(k.lost),
          us(k.latency.percentile_ns(50)), us(k.latency.percentile_ns(99)), us(k.latency.percentile_ns(99.9)));
    }
  }
  if (r.trace_mismatch || r.payload_mismatch)
    std::printf("WARNING: %llu replies did not echo the trace id, %llu did not echo the payload size\n",
                static_cast<unsigned long long>(r.trace_mismatch), static_cast<unsigned long long>(r.payload_mismatch));
  return 0;
}
