// axonctl cache: the data plane's response cache (docs/operations.md, "Response cache"):
// invalidate one agent's entries or every agent's, and show an agent's cache settings and the
// cache's figures.
#include <CLI/CLI.hpp>
#include <memory>

#include "api_call.h"
#include "commands.h"
#include "tables.h"

namespace axon::ctl {
namespace {

using nlohmann::json;

std::string text_of(const json& j, const char* key) {
  return j.is_object() && j.contains(key) ? j[key].dump() : "?";
}

std::string render_cache(const json& c) {
  std::string out = "agent " + (c.contains("agent") && c["agent"].is_string() ? c["agent"].get<std::string>() : "?") +
                    ": cacheable " + text_of(c, "cacheable") + ", TTL " + text_of(c, "cache_ttl_ms") + " ms\n";
  if (!c.contains("dataplane") || !c["dataplane"].is_object()) return out;
  const json& d = c["dataplane"];
  out += "data plane cache (all cacheable agents): hits " + text_of(d, "hits") + ", misses " + text_of(d, "misses") +
         ", insertions " + text_of(d, "insertions") + ", evictions " + text_of(d, "evictions") + ", expirations " +
         text_of(d, "expirations") + ", invalidations " + text_of(d, "invalidations") + "\n" +
         "in use: " + text_of(d, "entries") + " entries, " + text_of(d, "bytes") + " bytes\n";
  if (d.contains("hit_latency_us") && d["hit_latency_us"].is_object()) {
    const json& h = d["hit_latency_us"];
    out += "hit latency: p50 " + text_of(h, "p50") + " us, p99 " + text_of(h, "p99") + " us over " +
           text_of(h, "count") + " hits\n";
  }
  return out;
}

}  // namespace

void add_cache_command(CLI::App& app, GlobalOptions& global, Runner& selected) {
  CLI::App* cmd = app.add_subcommand("cache", "The data plane's response cache of cacheable agents");
  cmd->require_subcommand(1);

  struct InvalidateOptions {
    std::string agent;
    bool all = false;
  };
  auto o = std::make_shared<InvalidateOptions>();
  CLI::App* inv = cmd->add_subcommand("invalidate", "Drop the cached replies of one agent (--agent) or all (--all)");
  CLI::Option* agent = inv->add_option("--agent", o->agent, "Agent name");
  CLI::Option* all = inv->add_flag("--all", o->all, "Every agent's entries");
  agent->excludes(all);
  all->excludes(agent);
  inv->callback([&global, &selected, o] {
    selected = [&global, o] {
      if (o->agent.empty() == !o->all) {
        print_error_to(global, "cache invalidate: give --agent NAME or --all");
        return int(kExitUsage);
      }
      const std::string path = o->all ? "/v1/cache" : "/v1/agents/" + path_segment(o->agent) + "/cache";
      const std::string what = o->all ? "every agent" : "agent " + o->agent;
      return call_api(global, {"DELETE", path, ""},
                      [what](const json&) { return "invalidated the response cache of " + what + "\n"; });
    };
  });

  auto show_name = std::make_shared<std::string>();
  CLI::App* show = cmd->add_subcommand("show", "An agent's cache settings and the cache's hits, misses and latency");
  show->add_option("name", *show_name, "Agent name")->required();
  show->callback([&global, &selected, show_name] {
    const std::string path = "/v1/agents/" + path_segment(*show_name) + "/cache";
    selected = [&global, path] { return call_api(global, {"GET", path, ""}, render_cache); };
  });
}

}  // namespace axon::ctl
