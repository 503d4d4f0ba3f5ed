// The shared model's strict parsers: IpPrefix (model.h) and JsonReader (json_reader.h).
#include "axon/common/model.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <optional>

#include "axon/common/json_reader.h"

namespace axon {
namespace {

using nlohmann::json;

TEST(IpPrefix, AcceptsAddressesAndPrefixes) {
  auto v4 = model::parse_ip_prefix("10.0.0.0/8");
  ASSERT_TRUE(v4) << v4.message();
  EXPECT_EQ(v4->ip_version, 4);
  EXPECT_EQ(v4->length, 8);
  EXPECT_EQ(v4->to_string(), "10.0.0.0/8");
  auto host = model::parse_ip_prefix("192.0.2.7");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->length, 32);
  auto v6 = model::parse_ip_prefix("2001:db8::/32");
  ASSERT_TRUE(v6) << v6.message();
  EXPECT_EQ(v6->ip_version, 6);
  EXPECT_EQ(v6->to_string(), "2001:db8::/32");
  EXPECT_TRUE(model::parse_ip_prefix("0.0.0.0/0"));
  EXPECT_TRUE(model::parse_ip_prefix("::/0"));
  EXPECT_TRUE(model::parse_ip_prefix("10.199.77.0/30"));
}

TEST(IpPrefix, RefusesAnythingLoose) {
  for (const char* text : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/8x", "10.0.0.0/+8",
                           "10.0.0.0/-1", "10.0.0.0/08", "10.0.0.0/ 8", " 10.0.0.0/8", "10.0.0/8", "example.com",
                           "10.0.0.0/8/8", "10.0.0.1/8", "2001:db8::1/32"}) {
    auto parsed = model::parse_ip_prefix(text);
    EXPECT_FALSE(parsed) << "accepted '" << text << "'";
    if (!parsed) {
      EXPECT_NE(parsed.message().find("10.0.0.0/8"), std::string::npos) << parsed.message();  // says what to write
    }
  }
  // The message names the text and the problem.
  EXPECT_NE(model::parse_ip_prefix("10.0.0.1/8").message().find("bits are set beyond the first 8"), std::string::npos);
}

TEST(IpPrefix, ContainsComparesTheFirstLengthBits) {
  auto p = model::parse_ip_prefix("10.1.128.0/17").value();
  const std::array<std::uint8_t, 4> in{10, 1, 200, 3}, out{10, 1, 127, 3};
  EXPECT_TRUE(p.contains(in.data()));
  EXPECT_FALSE(p.contains(out.data()));
  auto all = model::parse_ip_prefix("0.0.0.0/0").value();
  EXPECT_TRUE(all.contains(out.data()));
}

enum class Colour { red, green };
constexpr std::array<const char*, 2> enum_names(Colour) {
  return {"red", "green"};
}

struct Thing {
  std::string name;
  std::uint32_t count = 0;
  std::optional<std::int64_t> offset;
  Colour colour = Colour::red;
  std::vector<std::string> tags;
  std::uint32_t inner_min = 0;
};

std::optional<std::string> read_thing(const json& j, Thing& t) {
  JsonReader r(j, "thing");
  r.required("name", t.name);
  r.optional("count", t.count);
  r.optional("offset", t.offset);
  r.optional("colour", t.colour);
  r.optional("tags", t.tags);
  r.nested("inner", false, [&](JsonReader& inner) { inner.required("min", t.inner_min); });
  r.finish();
  return r.error();
}

TEST(JsonReader, ReadsEveryTypeAndNamesTheFieldOnError) {
  Thing t;
  EXPECT_EQ(read_thing(json::parse(R"({"name":"a","count":3,"offset":-2,"colour":"green","tags":["x"],
                                      "inner":{"min":5}})"),
                       t),
            std::nullopt);
  EXPECT_EQ(t.count, 3u);
  EXPECT_EQ(t.offset, -2);
  EXPECT_EQ(t.colour, Colour::green);
  EXPECT_EQ(t.inner_min, 5u);

  auto error = [](const char* text) {
    Thing scratch;
    return read_thing(json::parse(text), scratch).value_or("");
  };
  EXPECT_EQ(error(R"({"count":1})"), "missing required field 'name' in thing");
  EXPECT_EQ(error(R"({"name":"a","count":-1})"), "field 'count' in thing must be an unsigned integer below 2^32");
  EXPECT_EQ(error(R"({"name":"a","count":1.5})"), "field 'count' in thing must be an unsigned integer below 2^32");
  EXPECT_EQ(error(R"({"name":"a","count":4294967296})"),
            "field 'count' in thing must be an unsigned integer below 2^32");
  EXPECT_EQ(error(R"({"name":"a","colour":"blue"})"), "field 'colour' in thing must be one of \"red\", \"green\"");
  EXPECT_EQ(error(R"({"name":"a","tags":["x",1]})"), "field 'tags[1]' in thing must be a string");
  EXPECT_EQ(error(R"({"name":"a","inner":3})"), "field 'inner' in thing must be an object");
  EXPECT_EQ(error(R"({"name":"a","inner":{"min":1,"max":2}})"), "unknown field 'inner.max' in thing");
  EXPECT_EQ(error(R"({"name":"a","inner":{}})"), "missing required field 'inner.min' in thing");
  EXPECT_EQ(error(R"({"name":"a","shade":1})"), "unknown field 'shade' in thing");
  EXPECT_EQ(error(R"([1])"), "thing must be a JSON object");
  // The first error wins.
  EXPECT_EQ(error(R"({"name":1,"count":"x"})"), "field 'name' in thing must be a string");
}

// Scheduling knobs (issue 13): the policy names, the range checks and the reservation size.
TEST(Scheduling, DispatchNamesRoundTripAndUnknownNamesAreRefused) {
  for (auto d : {model::Dispatch::sticky, model::Dispatch::p2c, model::Dispatch::jsq, model::Dispatch::round_robin}) {
    auto parsed = model::parse_dispatch(model::to_string(d));
    ASSERT_TRUE(parsed) << model::to_string(d);
    EXPECT_EQ(parsed.value(), d);
  }
  auto bad = model::parse_dispatch("Sticky");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.message(), "unknown dispatch policy 'Sticky'; use \"sticky\", \"p2c\", \"jsq\" or \"round_robin\"");
  EXPECT_FALSE(model::parse_dispatch(""));
}

TEST(Scheduling, ChecksNameTheKnob) {
  EXPECT_TRUE(model::check_scheduling(model::Scheduling{}, "agent 1"));
  auto message = [](auto mutate) {
    model::Scheduling s;
    mutate(s);
    auto r = model::check_scheduling(s, "agent 1");
    return r ? std::string("ok") : r.message();
  };
  EXPECT_EQ(message([](auto& s) { s.reserved_interactive = 64; }), "ok");
  EXPECT_EQ(message([](auto& s) { s.reserved_interactive = 65; }).rfind("agent 1: reserved_interactive: at most 64", 0),
            0u);
  EXPECT_EQ(message([](auto& s) { s.reserved_interactive_share = 1.0; }), "ok");
  EXPECT_NE(message([](auto& s) { s.reserved_interactive_share = 1.0001; }).find("reserved_interactive_share"),
            std::string::npos);
  EXPECT_NE(message([](auto& s) { s.reserved_interactive_share = std::nan(""); }).find("reserved_interactive_share"),
            std::string::npos);
  EXPECT_EQ(message([](auto& s) { s.high_water = 0.01; }), "ok");
  EXPECT_NE(message([](auto& s) { s.high_water = 0.0; }).find("agent 1: high_water"), std::string::npos);
  EXPECT_NE(message([](auto& s) { s.high_water = std::nan(""); }).find("high_water"), std::string::npos);
  EXPECT_NE(message([](auto& s) {
              s.queue_delay_target_us = model::kMaxQueueDelayTargetUs + 1;
            }).find("queue_delay_target_us"),
            std::string::npos);
  EXPECT_NE(message([](auto& s) { s.dispatch = model::Dispatch(9); }).find("dispatch"), std::string::npos);
  auto bare = model::check_scheduling(model::Scheduling{.high_water = 2.0}, "");
  ASSERT_FALSE(bare);
  EXPECT_EQ(bare.message().rfind("high_water: ", 0), 0u) << bare.message();
}

TEST(Scheduling, ReservedWorkersTakeTheLargerOfCountAndShare) {
  model::Scheduling s;
  EXPECT_EQ(model::reserved_workers(s, 8), 0u);
  s.reserved_interactive = 2;
  EXPECT_EQ(model::reserved_workers(s, 8), 2u);
  EXPECT_EQ(model::reserved_workers(s, 1), 1u);  // never more than the live workers
  s.reserved_interactive_share = 0.5;
  EXPECT_EQ(model::reserved_workers(s, 8), 4u);
  EXPECT_EQ(model::reserved_workers(s, 3), 2u);  // ceil(1.5)
  s.reserved_interactive = 0;
  s.reserved_interactive_share = 0.25;
  EXPECT_EQ(model::reserved_workers(s, 4), 1u);  // exactly 1, not 2 from rounding
  EXPECT_EQ(model::reserved_workers(s, 0), 0u);
}

// Issue 13: the one rule set for per-class rates and credits, shared by every tenant source.
TEST(TenantLimits, EachRateNeedsABurstAndCreditsMinStaysUnderMax) {
  model::Tenant t;
  EXPECT_EQ(model::tenant_limits_problem(t), "");
  t.interactive_rate_pps = 10;
  EXPECT_EQ(model::tenant_limits_problem(t).rfind("interactive_rate_pps needs interactive_burst", 0), 0u);
  t.interactive_burst = 1;
  EXPECT_EQ(model::tenant_limits_problem(t), "");
  t.background_rate_pps = 2'000'000'000u;
  t.background_burst = 4;
  EXPECT_EQ(model::tenant_limits_problem(t).rfind("background_rate_pps must be at most", 0), 0u);
  t.background_rate_pps = 5;
  t.rate_pps = 3;
  EXPECT_EQ(model::tenant_limits_problem(t).rfind("rate_pps needs burst", 0), 0u);
  t.burst = 3;
  t.credits_min = 9;  // credits off (credits_max 0): the floor does not matter
  EXPECT_EQ(model::tenant_limits_problem(t), "");
  t.credits_max = 8;
  EXPECT_EQ(model::tenant_limits_problem(t), "credits_min (9) must not exceed credits_max (8)");
  t.credits_max = 9;
  EXPECT_EQ(model::tenant_limits_problem(t), "");
}

}  // namespace
}  // namespace axon
