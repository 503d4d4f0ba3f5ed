// JSON encoding and strict decoding of control-socket messages (see control_codec.h).
//
// Decoding goes through axon's one strict JSON reader (common/json_reader.h) rather than
// nlohmann's throwing get<>, so a hostile or buggy peer gets a message naming the field, and
// the data plane's control thread never unwinds through an exception it did not expect.
#include "control_codec.h"

#include <sys/socket.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "axon/common/json_reader.h"

namespace axon::dataplane::control {
namespace {

using nlohmann::json;

// An agent's scheduling knobs (model::Scheduling), each optional with the model's default,
// then range-checked by the model's one check.
void read_scheduling(JsonReader& r, model::Scheduling& s) {
  std::string dispatch;
  if (r.optional("dispatch", dispatch)) {
    auto parsed = model::parse_dispatch(dispatch);
    if (!parsed) {
      r.fail("field 'dispatch' in " + r.what() + ": " + parsed.message());
      return;
    }
    s.dispatch = parsed.value();
  }
  model::for_each_scheduling_field(s, [&](const char* key, auto& field) { r.optional(key, field); });
  std::string eviction;
  if (r.optional("reply_cache_eviction", eviction)) {
    auto parsed = model::parse_reply_cache_eviction(eviction);
    if (!parsed) {
      r.fail("field 'reply_cache_eviction' in " + r.what() + ": " + parsed.message());
      return;
    }
    s.reply_cache_eviction = parsed.value();
  }
  if (!r.ok()) return;
  if (auto checked = model::check_scheduling(s, r.what()); !checked) r.fail(checked.message());
}

json scheduling_json(const model::Scheduling& s) {
  json out{{"dispatch", model::to_string(s.dispatch)}};
  model::for_each_scheduling_field(s, [&](const char* key, const auto& field) { out[key] = field; });
  out["reply_cache_eviction"] = model::to_string(s.reply_cache_eviction);
  return out;
}

Result<Tables, CodecError> parse_tables(const json& root) {
  Tables tables;
  auto invalid = [](std::string message) { return make_error(CodecError::invalid, std::move(message)); };
  JsonReader top(root, "apply");
  top.required("version", tables.version);
  if (!top.ok()) return invalid(*top.error());
  // The two lists are arrays of objects, read entry by entry below; every other key is
  // unknown (JsonReader::finish would not know the two lists were read).
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& key = it.key();
    if (key != "op" && key != "version" && key != "tenants" && key != "agents") {
      return invalid("unknown field '" + key + "' in apply");
    }
  }
  const auto tenants = root.find("tenants");
  const auto agents = root.find("agents");
  if (tenants == root.end() || !tenants->is_array()) {
    return invalid("field 'tenants' in apply must be an array (it may be empty)");
  }
  if (agents == root.end() || !agents->is_array()) {
    return invalid("field 'agents' in apply must be an array (it may be empty)");
  }
  std::size_t index = 0;
  for (const json& entry : *tenants) {
    TenantEntry t;
    JsonReader r(entry, "tenants[" + std::to_string(index++) + "]");
    r.required("id", t.id);
    r.optional("name", t.name);
    r.optional("rate_pps", t.rate_pps);
    r.optional("burst", t.burst);
    r.optional("prefixes", t.prefixes);
    r.optional("interactive_rate_pps", t.interactive_rate_pps);
    r.optional("interactive_burst", t.interactive_burst);
    r.optional("background_rate_pps", t.background_rate_pps);
    r.optional("background_burst", t.background_burst);
    r.optional("credits_max", t.credits_max);
    r.optional("credits_min", t.credits_min);
    r.optional("credit_delay_target_us", t.credit_delay_target_us);
    r.finish();
    if (!r.ok()) return invalid(*r.error());
    tables.tenants.push_back(std::move(t));
  }
  index = 0;
  for (const json& entry : *agents) {
    AgentEntry a;
    JsonReader r(entry, "agents[" + std::to_string(index++) + "]");
    r.required("id", a.id);
    r.required("tenant", a.tenant);
    r.optional("name", a.name);
    r.required("workers", a.workers);
    read_scheduling(r, a.scheduling);
    r.finish();
    if (!r.ok()) return invalid(*r.error());
    tables.agents.push_back(std::move(a));
  }
  return tables;
}

json slot_json(const SlotInfo& s) {
  return json{{"name", s.name},
              {"state", s.state},
              {"pid", s.pid},
              {"generation", s.generation},
              {"inflight", s.inflight},
              {"depth", s.depth},
              {"depth_interactive", s.depth_interactive},
              {"depth_background", s.depth_background},
              {"submitted", s.submitted},
              {"completed", s.completed},
              {"lost", s.lost},
              {"deaths", s.deaths}};
}

// Parses a reply and checks "ok"; returns the object on success.
Result<json, ControlError> parse_reply(std::string_view text) {
  json root = json::parse(text, nullptr, false);
  if (root.is_discarded() || !root.is_object()) {
    return make_error(ControlError::protocol_error,
                      "the data plane's reply is not a JSON object; are client and data plane the same release?");
  }
  auto ok = root.find("ok");
  if (ok == root.end() || !ok->is_boolean()) {
    return make_error(ControlError::protocol_error, "the data plane's reply has no \"ok\" field");
  }
  if (!ok->get<bool>()) {
    std::string message = "the data plane said no";
    if (auto e = root.find("error"); e != root.end() && e->is_string()) message = e->get<std::string>();
    bool refused = false;
    if (auto r = root.find("refused"); r != root.end() && r->is_boolean()) refused = r->get<bool>();
    return make_error(refused ? ControlError::refused : ControlError::rejected, message);
  }
  return root;
}

template <typename T>
bool read_number(const json& object, const char* key, T& out) {
  auto it = object.find(key);
  if (it == object.end()) return true;  // optional: newer/older peers may differ
  if (!it->is_number_integer()) return false;
  if constexpr (std::is_signed_v<T>) {
    out = T(it->get<std::int64_t>());
  } else {
    out = T(it->get<std::uint64_t>());
  }
  return true;
}

bool read_string(const json& object, const char* key, std::string& out) {
  auto it = object.find(key);
  if (it == object.end()) return true;
  if (!it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

Result<std::vector<SlotInfo>, ControlError> parse_slot_array(const json& root) {
  auto it = root.find("slots");
  if (it == root.end() || !it->is_array()) {
    return make_error(ControlError::protocol_error, "the data plane's reply has no \"slots\" array");
  }
  std::vector<SlotInfo> slots;
  for (const json& entry : *it) {
    SlotInfo s;
    bool ok = entry.is_object() && read_string(entry, "name", s.name) && read_string(entry, "state", s.state) &&
              read_number(entry, "pid", s.pid) && read_number(entry, "generation", s.generation) &&
              read_number(entry, "inflight", s.inflight) && read_number(entry, "depth", s.depth) &&
              read_number(entry, "depth_interactive", s.depth_interactive) &&
              read_number(entry, "depth_background", s.depth_background) &&
              read_number(entry, "submitted", s.submitted) && read_number(entry, "completed", s.completed) &&
              read_number(entry, "lost", s.lost) && read_number(entry, "deaths", s.deaths);
    if (!ok) return make_error(ControlError::protocol_error, "a slot in the data plane's reply has a mistyped field");
    slots.push_back(std::move(s));
  }
  return slots;
}

}  // namespace

Result<Request, CodecError> parse_request(std::string_view text) {
  if (text.size() > kMaxMessageBytes) {
    return make_error(CodecError::oversize, "request of " + std::to_string(text.size()) + " bytes exceeds the " +
                                                std::to_string(kMaxMessageBytes) + "-byte limit");
  }
  try {
    json root = json::parse(text, nullptr, false);
    if (root.is_discarded()) {
      return make_error(CodecError::malformed, "the request is not valid JSON");
    }
    if (!root.is_object()) return make_error(CodecError::malformed, "the request must be a JSON object");
    auto op = root.find("op");
    if (op == root.end() || !op->is_string()) {
      return make_error(CodecError::malformed,
                        "the request needs an \"op\" string (hello, apply, slots, grant or invalidate_cache)");
    }
    const std::string name = op->get<std::string>();
    Request request;
    if (name == "hello" || name == "slots") {
      if (root.size() != 1) return make_error(CodecError::invalid, name + " takes no other fields");
      request.op = name == "hello" ? Op::hello : Op::slots;
      return request;
    }
    if (name == "apply") {
      auto tables = parse_tables(root);
      if (!tables) return tables.error();
      request.op = Op::apply;
      request.tables = std::move(tables).value();
      return request;
    }
    if (name == "grant") {
      JsonReader r(root, "grant");
      std::string ignored;
      r.optional("op", ignored);
      r.optional("slot", request.slot);
      std::uint32_t pid = 0;
      r.required("pid", pid);
      r.finish();
      if (r.ok() && (request.slot.empty() || pid > 0x7fffffffu)) {
        r.fail("grant: 'slot' must name a slot and 'pid' must be a process id (0 = none yet)");
      }
      if (!r.ok()) return make_error(CodecError::invalid, *r.error());
      request.op = Op::grant;
      request.pid = std::int32_t(pid);
      return request;
    }
    if (name == "invalidate_cache") {
      JsonReader r(root, "invalidate_cache");
      std::string ignored;
      r.optional("op", ignored);
      const bool by_agent = r.optional("agent", request.agent_id);
      r.optional("all", request.all);
      r.finish();
      if (r.ok() && by_agent == request.all) {
        r.fail("invalidate_cache: give either 'agent' (an agent id) or \"all\": true");
      } else if (r.ok() && by_agent && request.agent_id == 0) {
        r.fail("invalidate_cache: 'agent' must be an agent id (1..4294967295)");
      }
      if (!r.ok()) return make_error(CodecError::invalid, *r.error());
      request.op = Op::invalidate_cache;
      return request;
    }
    return make_error(CodecError::unknown_op, "unknown op '" + name +
                                                  "'; this data plane knows hello, apply, slots, grant and "
                                                  "invalidate_cache");
  } catch (const std::exception& e) {
    // Not expected (every access above is type-checked), but a control message must
    // never take the data plane down.
    return make_error(CodecError::malformed, std::string("cannot decode the request: ") + e.what());
  }
}

std::string encode_error(std::string_view message, bool refused) {
  json reply{{"ok", false}, {"error", std::string(message)}};
  if (refused) reply["refused"] = true;
  // Replacement keeps a message with bytes that are not UTF-8 (echoed input) encodable.
  return reply.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_hello(const Hello& hello) {
  json slots = json::array();
  for (const SlotInfo& s : hello.slots) slots.push_back(slot_json(s));
  json reply{{"ok", true},
             {"protocol", kProtocolVersion},
             {"pid", hello.pid},
             {"interface", hello.interface},
             {"backend", hello.backend},
             {"mode", hello.mode},
             {"run_dir", hello.run_dir},
             {"table_version", hello.table_version},
             {"control",
              {{"refused_peers", hello.refused_peers},
               {"bad_requests", hello.bad_requests},
               {"applies", hello.applies},
               {"rejected_applies", hello.rejected_applies}}},
             {"slots", std::move(slots)}};
  return reply.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_slots(const std::vector<SlotInfo>& slots) {
  json array = json::array();
  for (const SlotInfo& s : slots) array.push_back(slot_json(s));
  return json{{"ok", true}, {"slots", std::move(array)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_applied(std::uint64_t version) {
  return json{{"ok", true}, {"table_version", version}}.dump();
}

std::string encode_ok() {
  return R"({"ok":true})";
}

std::string encode_invalidate_cache_request(std::uint32_t agent_id) {
  json request{{"op", "invalidate_cache"}};
  if (agent_id == 0) {
    request["all"] = true;
  } else {
    request["agent"] = agent_id;
  }
  return request.dump();
}

std::string encode_grant_request(const std::string& slot, std::int32_t pid) {
  return json{{"op", "grant"}, {"slot", slot}, {"pid", pid}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_hello_request() {
  return R"({"op":"hello"})";
}

std::string encode_slots_request() {
  return R"({"op":"slots"})";
}

std::string encode_apply_request(const Tables& tables) {
  json tenants = json::array();
  for (const TenantEntry& t : tables.tenants) {
    tenants.push_back(json{{"id", t.id},
                           {"name", t.name},
                           {"rate_pps", t.rate_pps},
                           {"burst", t.burst},
                           {"prefixes", t.prefixes},
                           {"interactive_rate_pps", t.interactive_rate_pps},
                           {"interactive_burst", t.interactive_burst},
                           {"background_rate_pps", t.background_rate_pps},
                           {"background_burst", t.background_burst},
                           {"credits_max", t.credits_max},
                           {"credits_min", t.credits_min},
                           {"credit_delay_target_us", t.credit_delay_target_us}});
  }
  json agents = json::array();
  for (const AgentEntry& a : tables.agents) {
    json agent{{"id", a.id}, {"tenant", a.tenant}, {"name", a.name}, {"workers", a.workers}};
    agent.update(scheduling_json(a.scheduling));
    agents.push_back(std::move(agent));
  }
  return json{
      {"op", "apply"}, {"version", tables.version}, {"tenants", std::move(tenants)}, {"agents", std::move(agents)}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Hello, ControlError> parse_hello_reply(std::string_view text) {
  auto root = parse_reply(text);
  if (!root) return root.error();
  const json& r = root.value();
  Hello hello;
  bool ok = read_number(r, "protocol", hello.protocol) && read_number(r, "pid", hello.pid) &&
            read_string(r, "interface", hello.interface) && read_string(r, "backend", hello.backend) &&
            read_string(r, "mode", hello.mode) && read_string(r, "run_dir", hello.run_dir) &&
            read_number(r, "table_version", hello.table_version);
  if (auto c = r.find("control"); ok && c != r.end() && c->is_object()) {
    ok = read_number(*c, "refused_peers", hello.refused_peers) && read_number(*c, "bad_requests", hello.bad_requests) &&
         read_number(*c, "applies", hello.applies) && read_number(*c, "rejected_applies", hello.rejected_applies);
  }
  if (!ok) return make_error(ControlError::protocol_error, "the data plane's hello reply has a mistyped field");
  if (hello.protocol != kProtocolVersion) {
    return make_error(ControlError::protocol_error, "the data plane speaks control protocol " +
                                                        std::to_string(hello.protocol) + ", this client " +
                                                        std::to_string(kProtocolVersion) + "; use matching releases");
  }
  auto slots = parse_slot_array(r);
  if (!slots) return slots.error();
  hello.slots = std::move(slots).value();
  return hello;
}

Result<std::vector<SlotInfo>, ControlError> parse_slots_reply(std::string_view text) {
  auto root = parse_reply(text);
  if (!root) return root.error();
  return parse_slot_array(root.value());
}

Result<std::uint64_t, ControlError> parse_applied_reply(std::string_view text) {
  auto root = parse_reply(text);
  if (!root) return root.error();
  std::uint64_t version = 0;
  auto it = root.value().find("table_version");
  if (it == root.value().end() || !it->is_number_unsigned()) {
    return make_error(ControlError::protocol_error, "the data plane's apply reply has no table_version");
  }
  version = it->get<std::uint64_t>();
  return version;
}

Result<Ok, ControlError> parse_ok_reply(std::string_view text) {
  auto root = parse_reply(text);
  if (!root) return root.error();
  return Ok{};
}

void widen_socket_buffers(int fd) noexcept {
  int size = int(kMaxMessageBytes + 4096);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
}

}  // namespace axon::dataplane::control
