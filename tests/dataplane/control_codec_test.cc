// The control socket's JSON messages: what the data plane accepts, what it refuses (and
// that the refusal names the field), and that client and server agree on every reply.
#include "control_codec.h"

#include <gtest/gtest.h>

#include "axon/dataplane/config.h"

namespace axon::dataplane::control {
namespace {

void expect_bad(const std::string& text, CodecError code, const std::string& needle) {
  auto r = parse_request(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.code(), code) << text << " -> " << r.message();
  EXPECT_NE(r.message().find(needle), std::string::npos) << text << " -> " << r.message();
}

TEST(ControlCodec, SimpleOpsParse) {
  auto hello = parse_request(R"({"op":"hello"})");
  ASSERT_TRUE(hello.ok()) << hello.message();
  EXPECT_EQ(hello->op, Op::hello);
  auto slots = parse_request(R"( { "op" : "slots" } )");
  ASSERT_TRUE(slots.ok()) << slots.message();
  EXPECT_EQ(slots->op, Op::slots);
}

// Slot grants (issue 11 item 16): the client's encoding parses back, and a grant without
// a slot, with a negative or oversized pid, or with extra fields is refused by name.
TEST(ControlCodec, GrantRoundTripsAndBadGrantsAreNamed) {
  auto grant = parse_request(encode_grant_request("slot-3", 1234));
  ASSERT_TRUE(grant.ok()) << grant.message();
  EXPECT_EQ(grant->op, Op::grant);
  EXPECT_EQ(grant->slot, "slot-3");
  EXPECT_EQ(grant->pid, 1234);
  auto revoke = parse_request(R"({"op":"grant","slot":"w0","pid":0})");
  ASSERT_TRUE(revoke.ok()) << revoke.message();
  EXPECT_EQ(revoke->pid, 0);
  expect_bad(R"({"op":"grant","pid":5})", CodecError::invalid, "'slot'");
  expect_bad(R"({"op":"grant","slot":"w0"})", CodecError::invalid, "missing required field 'pid' in grant");
  expect_bad(R"({"op":"grant","slot":"w0","pid":-1})", CodecError::invalid, "'pid'");
  expect_bad(R"({"op":"grant","slot":"w0","pid":4294967296})", CodecError::invalid, "'pid'");
  expect_bad(R"({"op":"grant","slot":"w0","pid":1,"uid":0})", CodecError::invalid, "unknown field 'uid' in grant");
  EXPECT_TRUE(parse_ok_reply(encode_ok()).ok());
  EXPECT_FALSE(parse_ok_reply(encode_error("grant: no worker slot named 'x'")).ok());
}

TEST(ControlCodec, MalformedRequestsAreRejectedWithAReason) {
  expect_bad("", CodecError::malformed, "not valid JSON");
  expect_bad("{\"op\":\"hello\"", CodecError::malformed, "not valid JSON");
  expect_bad("\xff\xfe", CodecError::malformed, "not valid JSON");
  expect_bad("[1,2]", CodecError::malformed, "JSON object");
  expect_bad("\"hello\"", CodecError::malformed, "JSON object");
  expect_bad("{}", CodecError::malformed, "\"op\"");
  expect_bad(R"({"op":5})", CodecError::malformed, "\"op\"");
  expect_bad(R"({"op":"hello","extra":1})", CodecError::invalid, "no other fields");
}

TEST(ControlCodec, UnknownOpIsNamed) {
  expect_bad(R"({"op":"format_disk"})", CodecError::unknown_op, "unknown op 'format_disk'");
}

TEST(ControlCodec, OversizeRequestIsRejectedBeforeParsing) {
  std::string big = R"({"op":"hello","pad":")" + std::string(kMaxMessageBytes, 'x') + "\"}";
  expect_bad(big, CodecError::oversize, "exceeds");
}

TEST(ControlCodec, ApplyRoundTripsThroughTheClientEncoder) {
  Tables t;
  t.version = 9;
  t.tenants.push_back({1, "acme", 1000, 50, {"10.0.0.0/8", "2001:db8::/32"}});
  t.agents.push_back({7, 1, "echo", {"slot-0", "slot-3"}, {}});
  t.agents.push_back({8, 1, "", {}, {}});
  auto r = parse_request(encode_apply_request(t));
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->op, Op::apply);
  EXPECT_EQ(r->tables.version, 9u);
  ASSERT_EQ(r->tables.tenants.size(), 1u);
  EXPECT_EQ(r->tables.tenants[0].name, "acme");
  EXPECT_EQ(r->tables.tenants[0].rate_pps, 1000u);
  EXPECT_EQ(r->tables.tenants[0].burst, 50u);
  EXPECT_EQ(r->tables.tenants[0].prefixes, t.tenants[0].prefixes);
  ASSERT_EQ(r->tables.agents.size(), 2u);
  EXPECT_EQ(r->tables.agents[0].workers, t.agents[0].workers);
  EXPECT_TRUE(r->tables.agents[1].workers.empty());
}

// An agent's scheduling knobs (issue 13) travel with its route: every field survives the
// round trip, and an entry without them takes the model's defaults.
TEST(ControlCodec, ApplyCarriesSchedulingKnobs) {
  Tables t;
  t.version = 3;
  AgentEntry a{7, 1, "echo", {"slot-0"}, {}};
  a.scheduling.dispatch = model::Dispatch::round_robin;
  a.scheduling.class_scheduling = false;
  a.scheduling.reserved_interactive = 2;
  a.scheduling.reserved_interactive_share = 0.5;
  a.scheduling.queue_delay_target_us = 750;
  a.scheduling.high_water = 0.8;
  a.scheduling.dedup_window_ms = 5000;
  a.scheduling.reply_cache_entries = 17;
  a.scheduling.reply_cache_eviction = model::ReplyCacheEviction::fifo;
  t.agents.push_back(a);
  for (auto d : {model::Dispatch::sticky, model::Dispatch::p2c, model::Dispatch::jsq}) {
    AgentEntry other{std::uint32_t(10 + int(d)), 1, "", {}, {}};
    other.scheduling.dispatch = d;
    t.agents.push_back(other);
  }
  auto r = parse_request(encode_apply_request(t));
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->tables.agents.size(), t.agents.size());
  for (std::size_t i = 0; i < t.agents.size(); ++i) EXPECT_EQ(r->tables.agents[i], t.agents[i]) << i;
  auto bare = parse_request(R"({"op":"apply","version":1,"tenants":[],"agents":[{"id":1,"tenant":1,"workers":[]}]})");
  ASSERT_TRUE(bare.ok()) << bare.message();
  EXPECT_EQ(bare->tables.agents[0].scheduling, model::Scheduling{});
}

TEST(ControlCodec, BadSchedulingKnobsAreNamed) {
  auto agent = [](const std::string& extra) {
    return R"({"op":"apply","version":1,"tenants":[],"agents":[{"id":1,"tenant":1,"workers":[],)" + extra + "}]}";
  };
  expect_bad(agent(R"("dispatch":"random")"), CodecError::invalid,
             "field 'dispatch' in agents[0]: unknown dispatch policy 'random'; use \"sticky\"");
  expect_bad(agent(R"("dispatch":1)"), CodecError::invalid, "field 'dispatch' in agents[0] must be a string");
  expect_bad(agent(R"("class_scheduling":"no")"), CodecError::invalid, "'class_scheduling' in agents[0]");
  expect_bad(agent(R"("reserved_interactive":-1)"), CodecError::invalid, "'reserved_interactive' in agents[0]");
  expect_bad(agent(R"("reserved_interactive":65)"), CodecError::invalid, "agents[0]: reserved_interactive: at most 64");
  expect_bad(agent(R"("reserved_interactive_share":1.2)"), CodecError::invalid,
             "agents[0]: reserved_interactive_share: use a share of the pool between 0 and 1");
  expect_bad(agent(R"("reserved_interactive_share":"half")"), CodecError::invalid, "must be a number");
  expect_bad(agent(R"("high_water":0)"), CodecError::invalid, "agents[0]: high_water");
  expect_bad(agent(R"("queue_delay_target_us":1.5)"), CodecError::invalid, "'queue_delay_target_us' in agents[0]");
  expect_bad(agent(R"("queue_delay_target_us":60000001)"), CodecError::invalid, "queue_delay_target_us: at most");
  expect_bad(agent(R"("dedup_window_ms":600001)"), CodecError::invalid, "agents[0]: dedup_window_ms: at most 600000");
  expect_bad(agent(R"("reply_cache_entries":0)"), CodecError::invalid, "agents[0]: reply_cache_entries: use 1 to");
  expect_bad(agent(R"("reply_cache_eviction":"random")"), CodecError::invalid,
             "field 'reply_cache_eviction' in agents[0]: unknown reply cache eviction 'random'");
  expect_bad(agent(R"("dispach":"p2c")"), CodecError::invalid, "unknown field 'dispach' in agents[0]");
}

// Issue 13: the per-class rates and credits cross the socket both ways; absent fields keep
// the model's defaults (an older control plane sends none of them).
TEST(ControlCodec, TenantClassLimitsAndCreditsRoundTrip) {
  Tables t;
  t.version = 3;
  TenantEntry tenant{2, "beta", 0, 0, {}};
  tenant.interactive_rate_pps = 700;
  tenant.interactive_burst = 7;
  tenant.background_rate_pps = 300;
  tenant.background_burst = 3;
  tenant.credits_max = 90;
  tenant.credits_min = 9;
  tenant.credit_delay_target_us = 450;
  t.tenants.push_back(tenant);
  auto r = parse_request(encode_apply_request(t));
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->tables.tenants.size(), 1u);
  EXPECT_EQ(r->tables.tenants[0], tenant);

  auto old = parse_request(R"({"op":"apply","version":1,"tenants":[{"id":1}],"agents":[]})");
  ASSERT_TRUE(old.ok()) << old.message();
  EXPECT_EQ(old->tables.tenants[0], (TenantEntry{1, "", 0, 0, {}}));
  expect_bad(R"({"op":"apply","version":1,"tenants":[{"id":1,"credits_max":-4}],"agents":[]})", CodecError::invalid,
             "field 'credits_max' in tenants[0]");
  expect_bad(R"({"op":"apply","version":1,"tenants":[{"id":1,"interactive_rate":4}],"agents":[]})", CodecError::invalid,
             "interactive_rate");
}

TEST(ControlCodec, ApplyFieldsAreTypeAndRangeChecked) {
  expect_bad(R"({"op":"apply","tenants":[],"agents":[]})", CodecError::invalid,
             "missing required field 'version' in apply");
  expect_bad(R"({"op":"apply","version":-1,"tenants":[],"agents":[]})", CodecError::invalid, "'version'");
  expect_bad(R"({"op":"apply","version":1,"agents":[]})", CodecError::invalid,
             "field 'tenants' in apply must be an array");
  expect_bad(R"({"op":"apply","version":1,"tenants":[],"agents":{}})", CodecError::invalid, "'agents'");
  expect_bad(R"({"op":"apply","version":1,"tenants":[],"agents":[],"x":1})", CodecError::invalid,
             "unknown field 'x' in apply");
  expect_bad(R"({"op":"apply","version":1,"tenants":[{"name":"a"}],"agents":[]})", CodecError::invalid,
             "missing required field 'id' in tenants[0]");
  expect_bad(R"({"op":"apply","version":1,"tenants":[{"id":4294967296}],"agents":[]})", CodecError::invalid,
             "field 'id' in tenants[0] must be an unsigned integer");
  expect_bad(R"({"op":"apply","version":1,"tenants":[{"id":1.5}],"agents":[]})", CodecError::invalid, "'id'");
  expect_bad(R"({"op":"apply","version":1,"tenants":[{"id":1,"prefixes":"10.0.0.0/8"}],"agents":[]})",
             CodecError::invalid, "field 'prefixes' in tenants[0] must be an array of strings");
  expect_bad(R"({"op":"apply","version":1,"tenants":[{"id":1,"rate":5}],"agents":[]})", CodecError::invalid,
             "unknown field 'rate' in tenants[0]");
  expect_bad(R"({"op":"apply","version":1,"tenants":[],"agents":[{"id":1,"tenant":1}]})", CodecError::invalid,
             "missing required field 'workers' in agents[0]");
  expect_bad(R"({"op":"apply","version":1,"tenants":[],"agents":[{"id":1,"tenant":1,"workers":[3]}]})",
             CodecError::invalid, "field 'workers[0]' in agents[0] must be a string");
  expect_bad(R"({"op":"apply","version":1,"tenants":[],"agents":[7]})", CodecError::invalid,
             "agents[0] must be a JSON object");
}

TEST(ControlCodec, RepliesRoundTrip) {
  Hello h;
  h.pid = 1234;
  h.interface = "axd0";
  h.backend = "xdp";
  h.mode = "copy";
  h.run_dir = "/run/axon";
  h.table_version = 77;
  h.refused_peers = 2;
  h.bad_requests = 3;
  h.applies = 4;
  h.rejected_applies = 5;
  SlotInfo s;
  s.name = "slot-0";
  s.state = "alive";
  s.pid = 99;
  s.generation = 3;
  s.inflight = 4;
  s.depth = 5;
  s.depth_interactive = 3;
  s.depth_background = 2;
  s.submitted = 6;
  s.completed = 7;
  s.lost = 8;
  s.deaths = 9;
  h.slots = {s, SlotInfo{"slot-1", "vacant"}};
  auto back = parse_hello_reply(encode_hello(h));
  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->protocol, kProtocolVersion);
  EXPECT_EQ(back->pid, 1234);
  EXPECT_EQ(back->interface, "axd0");
  EXPECT_EQ(back->mode, "copy");
  EXPECT_EQ(back->run_dir, "/run/axon");
  EXPECT_EQ(back->table_version, 77u);
  EXPECT_EQ(back->refused_peers, 2u);
  EXPECT_EQ(back->rejected_applies, 5u);
  ASSERT_EQ(back->slots.size(), 2u);
  EXPECT_EQ(back->slots[0].pid, 99);
  EXPECT_EQ(back->slots[0].deaths, 9u);
  EXPECT_EQ(back->slots[0].completed, 7u);
  EXPECT_EQ(back->slots[1].state, "vacant");

  auto slots = parse_slots_reply(encode_slots(h.slots));
  ASSERT_TRUE(slots.ok()) << slots.message();
  ASSERT_EQ(slots->size(), 2u);
  EXPECT_EQ((*slots)[0].depth, 5u);
  EXPECT_EQ((*slots)[0].depth_interactive, 3u);  // per class (issue 15)
  EXPECT_EQ((*slots)[0].depth_background, 2u);
  auto applied = parse_applied_reply(encode_applied(12));
  ASSERT_TRUE(applied.ok()) << applied.message();
  EXPECT_EQ(applied.value(), 12u);
}

TEST(ControlCodec, ErrorRepliesBecomeRejectedOrRefused) {
  auto rejected = parse_applied_reply(encode_error("agent 7 names worker slot 'x'"));
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.code(), ControlError::rejected);
  EXPECT_EQ(rejected.message(), "agent 7 names worker slot 'x'");
  auto refused = parse_hello_reply(encode_error("refused: uid 5", true));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), ControlError::refused);
  for (const char* junk : {"", "nope", "[]", R"({"ok":"yes"})", R"({"ok":true})"}) {
    auto r = parse_hello_reply(junk);
    ASSERT_FALSE(r.ok()) << junk;
    EXPECT_EQ(r.code(), ControlError::protocol_error) << junk;
  }
  auto wrong_protocol = parse_hello_reply(R"({"ok":true,"protocol":2,"slots":[]})");
  ASSERT_FALSE(wrong_protocol.ok());
  EXPECT_NE(wrong_protocol.message().find("protocol 2"), std::string::npos);
}

// check_tables applies the TOML rules to tables from the socket, naming the item.
TEST(ControlTables, CheckTablesNamesTheOffendingItem) {
  std::vector<WorkerConfig> slots{{"slot-0"}, {"slot-1"}};
  std::vector<TenantConfig> tenants{{1, "a", 0, 0, {"10.0.0.0/8"}}};
  std::vector<AgentConfig> agents{{7, 1, "x", {"slot-0"}, {}}, {8, 1, "empty", {}, {}}};
  EXPECT_TRUE(check_tables(tenants, agents, slots).ok());
  EXPECT_TRUE(check_tables({}, {}, slots).ok());

  auto expect = [&](const std::vector<TenantConfig>& t, const std::vector<AgentConfig>& a, const std::string& needle) {
    auto r = check_tables(t, a, slots);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_NE(r.message().find(needle), std::string::npos) << r.message();
  };
  expect(tenants, {{7, 1, "", {"slot-0", "slot-5"}, {}}}, "agent 7 names worker slot 'slot-5'");
  expect(tenants, {{7, 2, "", {"slot-0"}, {}}}, "agent 7: tenant 2");
  expect({{1, "", 0, 0, {"10.0.0.0/33"}}}, {}, "tenant 1: '10.0.0.0/33'");
  expect({{1, "", 0, 0, {"example.com"}}}, {}, "'example.com'");
  expect({{1, "", 10, 0, {}}}, {}, "tenant 1: set a burst");
  TenantConfig class_rate{3, "", 0, 0, {}};
  class_rate.background_rate_pps = 5;
  expect({class_rate}, {}, "tenant 3: background_rate_pps needs background_burst");
  TenantConfig credits{3, "", 0, 0, {}};
  credits.credits_max = 2;
  credits.credits_min = 3;
  expect({credits}, {}, "tenant 3: credits_min (3) must not exceed credits_max (2)");
  expect({{1, "", 0, 0, {}}, {1, "", 0, 0, {}}}, {}, "tenant 1: tenant ids must be unique");
  expect(tenants, {{7, 1, "", {}, {}}, {7, 1, "", {}, {}}}, "agent 7: agent ids must be unique");
  expect(tenants, {{7, 1, "", std::vector<std::string>(65, "slot-0"), {}}}, "at most 64");
}

}  // namespace
}  // namespace axon::dataplane::control
