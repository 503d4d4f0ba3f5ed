// axonctl top's frame (see top_view.h).
#include "top_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace axon::ctl {
namespace {

using nlohmann::json;

std::uint64_t u64(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() || it->get<std::int64_t>() < 0) return 0;
  return it->get<std::uint64_t>();
}

std::string str(const json& j, const char* key) {
  if (!j.is_object()) return "-";
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "-";
}

struct Interval {
  double seconds = 0;  // 0: no usable previous sample
  double rate(std::uint64_t before, std::uint64_t now) const {
    if (seconds <= 0 || now < before) return -1;  // no interval, or the data plane restarted
    return double(now - before) / seconds;
  }
};

std::string format_rate(double r) {
  if (r < 0) return "-";
  char b[32];
  if (r >= 1e6) {
    std::snprintf(b, sizeof b, "%.2fM", r / 1e6);
  } else if (r >= 1e4) {
    std::snprintf(b, sizeof b, "%.1fk", r / 1e3);
  } else {
    std::snprintf(b, sizeof b, "%.0f", r);
  }
  return b;
}

std::string pad(std::string s, std::size_t w) {
  if (s.size() > w) s.resize(w);
  s.append(w - s.size(), ' ');
  return s;
}

std::string rpad(std::string s, std::size_t w) {
  if (s.size() > w) s.resize(w);
  return std::string(w - s.size(), ' ') + s;
}

// previous[key], or null (never a temporary: rows keep references into it).
const json& member(const json& j, const char* key) {
  static const json none;
  if (!j.is_object()) return none;
  const auto it = j.find(key);
  return it != j.end() ? *it : none;
}

// The entry of `list` (an array of objects) whose `key` equals `value`, or null.
const json& find_by(const json& list, const char* key, const json& value) {
  static const json none;
  if (!list.is_array()) return none;
  for (const auto& e : list) {
    if (e.is_object() && e.contains(key) && e[key] == value) return e;
  }
  return none;
}

// "reason 12/s  other 3/s" for the non-zero rates of a {reason: counter} object; "none" if all zero.
std::string reason_rates(const json& before, const json& now, const Interval& iv) {
  std::string out;
  if (!now.is_object()) return "-";
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (!it->is_number_integer()) continue;
    const double r = iv.rate(u64(before, it.key().c_str()), u64(now, it.key().c_str()));
    if (r <= 0) continue;
    out += (out.empty() ? "" : "  ") + it.key() + " " + format_rate(r);
  }
  return out.empty() ? (iv.seconds > 0 ? "none" : "-") : out;
}

class Frame {
 public:
  explicit Frame(const TopLayout& layout) : layout_(layout) {}
  void line(std::string s) {
    if (s.size() > layout_.width) s.resize(layout_.width);
    while (!s.empty() && s.back() == ' ') s.pop_back();
    lines_.push_back(std::move(s));
  }
  // Room left for `reserve` more lines after these rows (unlimited when height is 0).
  std::size_t room(std::size_t reserve) const {
    if (layout_.height == 0) return SIZE_MAX;
    const std::size_t used = lines_.size() + reserve;
    return used >= layout_.height ? 0 : layout_.height - used;
  }
  // Rows with a "+N more" line when they do not fit in `limit` lines.
  void rows(const std::vector<std::string>& rows, std::size_t limit, const char* what) {
    if (rows.size() <= limit) {
      for (const auto& r : rows) line(r);
      return;
    }
    const std::size_t shown = limit == 0 ? 0 : limit - 1;
    for (std::size_t i = 0; i < shown; ++i) line(rows[i]);
    if (limit > 0) line("  +" + std::to_string(rows.size() - shown) + " more " + what);
  }
  std::vector<std::string> take() { return std::move(lines_); }

 private:
  TopLayout layout_;
  std::vector<std::string> lines_;
};

}  // namespace

std::string format_ns(double ns) {
  char b[32];
  if (ns < 0) return "-";
  if (ns < 1e3) {
    std::snprintf(b, sizeof b, "%.0fns", ns);
  } else if (ns < 1e6) {
    std::snprintf(b, sizeof b, "%.3gus", ns / 1e3);
  } else if (ns < 1e9) {
    std::snprintf(b, sizeof b, "%.3gms", ns / 1e6);
  } else {
    std::snprintf(b, sizeof b, "%.2fs", ns / 1e9);
  }
  return b;
}

double interval_quantile_ns(const json& previous_stage, const json& stage, double q) {
  std::map<std::uint64_t, std::pair<std::uint64_t, std::int64_t>> delta;  // lower -> (width, count)
  auto add = [&](const json& s, int sign) {
    if (!s.is_object() || !s.contains("buckets") || !s["buckets"].is_array()) return;
    for (const auto& b : s["buckets"]) {
      if (!b.is_array() || b.size() != 3) continue;
      auto& d = delta[b[0].get<std::uint64_t>()];
      d.first = b[1].get<std::uint64_t>();
      d.second += sign * std::int64_t(b[2].get<std::uint64_t>());
    }
  };
  add(stage, 1);
  add(previous_stage, -1);
  std::int64_t total = 0;
  for (const auto& [lower, d] : delta) {
    if (d.second < 0) return -1;  // the data plane restarted in between
    total += d.second;
  }
  if (total == 0) return -1;
  const auto want = std::max<std::int64_t>(1, std::int64_t(std::ceil(q * double(total))));
  const bool pow2 = str(stage, "source") == "pow2";
  std::int64_t seen = 0;
  for (const auto& [lower, d] : delta) {
    seen += d.second;
    if (seen >= want) return pow2 ? double(lower + d.first) : double(lower) + double(d.first - 1) / 2.0;
  }
  return -1;
}

namespace {

std::vector<std::string> lcore_rows(const json& previous, const json& current, const Interval& iv) {
  const json& lcores = current.value("lcores", json::array());
  std::vector<std::string> rows;
  for (const auto& l : lcores) {
    const json& p = find_by(member(previous, "lcores"), "lcore", l["lcore"]);
    const double loops = iv.rate(u64(p, "loops"), u64(l, "loops"));
    const double idle = iv.rate(u64(p, "idle_loops"), u64(l, "idle_loops"));
    std::string busy = "-";
    if (loops > 0 && idle >= 0) {
      char b[16];
      const double pct = 100.0 * std::max(0.0, loops - idle) / loops;
      std::snprintf(b, sizeof b, pct < 10 ? "%.1f%%" : "%.0f%%", pct);  // a lightly loaded lcore is not 0%
      busy = b;
    }
    rows.push_back(pad(std::to_string(u64(l, "lcore")), 6) +
                   rpad(format_rate(iv.rate(u64(p, "rx_frames"), u64(l, "rx_frames"))), 9) +
                   rpad(format_rate(iv.rate(u64(p, "requests"), u64(l, "requests"))), 9) +
                   rpad(format_rate(iv.rate(u64(p, "responses"), u64(l, "responses"))), 9) +
                   rpad(format_rate(iv.rate(u64(p, "busy_sent"), u64(l, "busy_sent"))), 9) +
                   rpad(format_rate(iv.rate(u64(p, "drops"), u64(l, "drops"))), 9) + rpad(busy, 7));
  }
  return rows;
}

// One row per stage with both classes merged (per-class rows: GET /v1/top and the dashboard).
std::vector<std::string> stage_rows(const json& previous, const json& current, const Interval& iv) {
  const json& stages = current.value("stages", json::array());
  std::vector<std::string> rows;
  for (const auto& s : stages) {
    if (str(s, "class") != "all") continue;
    json prev_stage;
    if (previous.is_object() && previous.contains("stages")) {
      for (const auto& p : previous["stages"]) {
        if (p.value("stage", "") == s.value("stage", "") && p.value("class", "") == s.value("class", ""))
          prev_stage = p;
      }
    }
    const bool pow2 = str(s, "source") == "pow2";
    const std::string bound = pow2 ? "<" : "";
    const double p50 = iv.seconds > 0 ? interval_quantile_ns(prev_stage, s, 0.50) : -1;
    const double p99 = iv.seconds > 0 ? interval_quantile_ns(prev_stage, s, 0.99) : -1;
    rows.push_back(pad(str(s, "stage") + (pow2 ? " (pow2)" : ""), 16) + pad(str(s, "class"), 12) +
                   rpad(p50 < 0 ? "-" : bound + format_ns(p50), 9) + rpad(p99 < 0 ? "-" : bound + format_ns(p99), 9) +
                   rpad(format_rate(iv.rate(u64(prev_stage, "count"), u64(s, "count"))), 9));
  }
  return rows;
}

}  // namespace

std::vector<std::string> render_top(const json& previous, const json& current, const TopLayout& layout) {
  Frame f(layout);
  Interval iv;
  const std::uint64_t t0 = u64(previous, "sampled_at_ms"), t1 = u64(current, "sampled_at_ms");
  if (previous.is_object() && t1 > t0) iv.seconds = double(t1 - t0) / 1000.0;
  const json& dp = current.is_object() && current.contains("dataplane") ? current["dataplane"] : json();
  const json& dp0 = previous.is_object() && previous.contains("dataplane") ? previous["dataplane"] : json();
  char head[160];
  std::snprintf(head, sizeof head, "axon top   data plane %s %s/%s on %s   interval %.1fs",
                dp.is_object() && dp.value("ready", false) ? "ready" : "NOT READY", str(dp, "backend").c_str(),
                str(dp, "mode").c_str(), str(dp, "interface").c_str(), iv.seconds);
  f.line(head);
  f.line("rx/s " + format_rate(iv.rate(u64(dp0, "rx_frames"), u64(dp, "rx_frames"))) + "  req/s " +
         format_rate(iv.rate(u64(dp0, "requests"), u64(dp, "requests"))) + "  resp/s " +
         format_rate(iv.rate(u64(dp0, "responses"), u64(dp, "responses"))) + "  busy/s " +
         format_rate(iv.rate(u64(dp0, "busy_sent"), u64(dp, "busy_sent"))) + "  err/s " +
         format_rate(iv.rate(u64(dp0, "errors_sent"), u64(dp, "errors_sent"))) + "  drop/s " +
         format_rate(iv.rate(u64(dp0, "drops"), u64(dp, "drops"))));

  std::vector<std::string> rows = lcore_rows(previous, current, iv);
  f.line(pad("LCORE", 6) + rpad("RX/s", 9) + rpad("REQ/s", 9) + rpad("RESP/s", 9) + rpad("BUSY/s", 9) +
         rpad("DROP/s", 9) + rpad("BUSY%", 7));
  f.rows(rows, layout.height == 0 ? SIZE_MAX : 4, "lcores");

  f.line(pad("STAGE", 16) + pad("CLASS", 12) + rpad("P50", 9) + rpad("P99", 9) + rpad("N/s", 9) + "  (interval)");
  rows = stage_rows(previous, current, iv);
  f.rows(rows, std::min<std::size_t>(layout.height == 0 ? SIZE_MAX : 6, f.room(4 + 2)), "stages");

  f.line("drops/s  " + reason_rates(previous.is_object() ? previous.value("drops", json()) : json(),
                                    current.value("drops", json()), iv));
  f.line("BUSY/s   " + reason_rates(previous.is_object() ? previous.value("busy", json()) : json(),
                                    current.value("busy", json()), iv));

  f.line(pad("WORKER", 16) + pad("AGENT", 12) + pad("CLASS", 9) + pad("STATE", 9) + rpad("DEPTH", 6) +
         rpad("INT/BG", 9) + rpad("INFL", 6) + rpad("DONE/s", 9));
  rows.clear();
  for (const auto& w : current.value("workers", json::array())) {
    const json& p = find_by(member(previous, "workers"), "id", w["id"]);
    rows.push_back(
        pad(str(w, "id"), 16) + pad(str(w, "agent"), 12) + pad(str(w, "class"), 9) + pad(str(w, "state"), 9) +
        rpad(std::to_string(u64(w, "ring_depth")), 6) +
        rpad(std::to_string(u64(w, "ring_depth_interactive")) + "/" + std::to_string(u64(w, "ring_depth_background")),
             9) +
        rpad(std::to_string(u64(w, "inflight")), 6) +
        rpad(format_rate(p.is_null() ? -1 : iv.rate(u64(p, "completed"), u64(w, "completed"))), 9));
  }
  if (rows.empty()) rows.push_back("(no workers)");
  f.rows(rows, f.room(0), "workers");
  return f.take();
}

}  // namespace axon::ctl
