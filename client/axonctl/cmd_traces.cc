// axonctl traces: the control plane's sampled traces (GET /v1/traces, docs/observability.md,
// "Traces"): a table of the recent ones with their stages, one trace's span tree, and a trace
// exported as Perfetto / Chrome trace-event JSON for ui.perfetto.dev. Plain text, no escape
// codes, so it reads the same on a terminal and in a pipe.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {
namespace {

using nlohmann::json;

std::uint64_t number(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer()) return 0;
  return j[key].get<std::int64_t>() < 0 ? 0 : j[key].get<std::uint64_t>();
}
std::string text(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() && !j[key].get<std::string>().empty()
             ? j[key].get<std::string>()
             : "-";
}
std::string micros(std::uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fus", double(ns) / 1000.0);
  return buf;
}

constexpr const char* kStages[] = {"ingress", "queue", "handler", "return", "egress"};

std::string render_list(const json& body) {
  if (!body.is_object() || !body.contains("traces") || !body["traces"].is_array()) return "no traces in the answer\n";
  if (body["traces"].empty()) {
    return "no traces yet: requests are traced when the client sets the sampled flag or [telemetry] "
           "trace_sample_rate picks them\n";
  }
  Table t({"TRACE ID", "REQUEST", "AGENT", "TENANT", "TOTAL", "INGRESS", "QUEUE", "HANDLER", "RETURN", "EGRESS"});
  for (const auto& e : body["traces"]) {
    std::vector<std::string> row{text(e, "trace_id"), std::to_string(number(e, "request_id")), text(e, "agent"),
                                 text(e, "tenant"), micros(number(e, "duration_ns"))};
    for (const char* stage : kStages) row.push_back(micros(number(e.value("stages_ns", json::object()), stage)));
    t.add_row(std::move(row));
  }
  return t.str();
}

// One traced request: its spans as a tree under the client's span, with offsets from the
// appliance span's start and durations.
std::string render_request(const json& e) {
  std::string out = "request " + std::to_string(number(e, "request_id")) + "  agent " + text(e, "agent") + "  tenant " +
                    text(e, "tenant") + "  lcore " + std::to_string(number(e, "lcore")) + "  class " +
                    text(e, "class") + "  sampled by " + text(e, "sampled_by") + "  total " +
                    micros(number(e, "duration_ns")) + "\n";
  const json spans = e.value("spans", json::array());
  std::map<std::string, std::vector<const json*>> children;
  std::map<std::string, bool> known;
  for (const auto& s : spans) known[text(s, "span_id")] = true;
  std::vector<std::string> roots;
  for (const auto& s : spans) {
    const std::string parent = text(s, "parent_span_id");
    children[parent].push_back(&s);
    if (!known.count(parent) && std::find(roots.begin(), roots.end(), parent) == roots.end()) roots.push_back(parent);
  }
  const std::uint64_t t0 = number(e, "start_unix_ns");
  std::function<void(const std::string&, int)> walk = [&](const std::string& parent, int depth) {
    for (const json* s : children[parent]) {
      const std::uint64_t start = number(*s, "start_unix_ns");
      char line[256];
      std::snprintf(line, sizeof line, "%*s%-10s %s  +%-10s %s\n", 2 * depth, "", text(*s, "name").c_str(),
                    text(*s, "span_id").c_str(), micros(start >= t0 ? start - t0 : 0).c_str(),
                    micros(number(*s, "duration_ns")).c_str());
      out += line;
      walk(text(*s, "span_id"), depth + 1);
    }
  };
  for (const auto& root : roots) {
    out += root + " (the client's span)\n";
    walk(root, 1);
  }
  return out;
}

std::string render_trace(const json& body) {
  std::string out = "trace " + text(body, "trace_id") + "\n";
  for (const auto& e : body.value("requests", json::array())) out += render_request(e);
  return out;
}

}  // namespace

void add_traces_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("traces", "Sampled traces: recent ones, one trace's spans, Perfetto export");
  struct ListOptions {
    std::string agent, tenant;
    unsigned limit = 20;
  };
  auto o = std::make_shared<ListOptions>();
  cmd->add_option("--agent", o->agent, "Only requests to this agent");
  cmd->add_option("--tenant", o->tenant, "Only requests of this tenant");
  cmd->add_option("--limit", o->limit, "At most this many, newest first (1..10000)")->check(CLI::Range(1, 10000));
  cmd->callback([&global, &selected, cmd, o] {
    if (!cmd->get_subcommands().empty()) return;  // show / export run instead
    std::string path = "/v1/traces?limit=" + std::to_string(o->limit);
    if (!o->agent.empty()) path += "&agent=" + path_segment(o->agent);
    if (!o->tenant.empty()) path += "&tenant=" + path_segment(o->tenant);
    selected = [&global, path] { return call_api(global, {"GET", path, ""}, render_list); };
  });

  auto show_id = std::make_shared<std::string>();
  CLI::App* show = cmd->add_subcommand("show", "One trace's spans as a tree, with offsets and durations");
  show->add_option("trace_id", *show_id, "Trace id (32 hex digits)")->required();
  show->callback([&global, &selected, show_id] {
    const std::string path = "/v1/traces/" + path_segment(*show_id);
    selected = [&global, path] { return call_api(global, {"GET", path, ""}, render_trace); };
  });

  struct ExportOptions {
    std::string id, file;
  };
  auto x = std::make_shared<ExportOptions>();
  CLI::App* exp = cmd->add_subcommand("export", "Write one trace as Perfetto / Chrome trace-event JSON");
  exp->add_option("trace_id", x->id, "Trace id (32 hex digits)")->required();
  exp->add_option("--perfetto", x->file, "Output file (open it in ui.perfetto.dev)")->required();
  exp->callback([&global, &selected, x] {
    selected = [&global, x] {
      const ApiRequest request{"GET", "/v1/traces/" + path_segment(x->id) + "?format=perfetto", ""};
      ApiOutcome outcome = send_api(global, request);
      if (!outcome.response) return outcome.exit_code;
      if (outcome.response->status >= 400) return report_api_error(global, request, *outcome.response);
      const json body = json::parse(outcome.response->body, nullptr, false);
      if (!body.is_object() || !body.contains("traceEvents")) {
        print_error_to(global, "the API's answer is not trace-event JSON");
        return int(kExitApiError);
      }
      std::FILE* f = std::fopen(x->file.c_str(), "w");
      if (f == nullptr || std::fwrite(outcome.response->body.data(), 1, outcome.response->body.size(), f) !=
                              outcome.response->body.size()) {
        if (f != nullptr) std::fclose(f);
        print_error_to(global, "cannot write " + x->file);
        return int(kExitFailure);
      }
      std::fclose(f);
      std::fprintf(global.out, "wrote %zu trace events to %s (open it in https://ui.perfetto.dev)\n",
                   body["traceEvents"].size(), x->file.c_str());
      return int(kExitOk);
    };
  });
}

}  // namespace axon::ctl
