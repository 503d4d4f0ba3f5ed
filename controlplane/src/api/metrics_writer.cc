// MetricsWriter: the Prometheus text exposition format (0.0.4), just what we emit.
#include <cmath>
#include <cstdio>

#include "axon/controlplane/api_server.h"

namespace axon::controlplane {
namespace {

// HELP text escapes backslash and newline; label values also escape the double quote.
std::string escape(const std::string& in, bool quote) {
  std::string out;
  out.reserve(in.size());
  for (const char c : in) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Integers (the common case: counters) print exactly; others with full precision.
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
  } else {
    std::snprintf(buf, sizeof buf, "%.17g", value);
  }
  return buf;
}

}  // namespace

MetricsWriter& MetricsWriter::family(const std::string& name, const std::string& type, const std::string& help) {
  current_ = name;
  out_ += "# HELP " + name + " " + escape(help, false) + "\n";
  out_ += "# TYPE " + name + " " + type + "\n";
  return *this;
}

MetricsWriter& MetricsWriter::sample(const Labels& labels, double value) {
  return sample(std::string(), labels, value);
}

MetricsWriter& MetricsWriter::sample(const std::string& suffix, const Labels& labels, double value) {
  out_ += current_;
  out_ += suffix;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [key, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += key + "=\"" + escape(v, true) + "\"";
    }
    out_ += '}';
  }
  out_ += ' ' + format_value(value) + '\n';
  return *this;
}

}  // namespace axon::controlplane
