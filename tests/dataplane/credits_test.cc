// The credit refresher (dataplane/src/credits.cc): the AIMD rule on fake samples, and the
// bookkeeping that turns worker counters into budgets for the XDP map and the userspace cells.
#include "axon/dataplane/credits.h"

#include <gtest/gtest.h>

#include <map>

namespace axon::dataplane {
namespace {

TenantConfig credited(std::uint32_t id, std::uint32_t max, std::uint32_t min = 1) {
  TenantConfig t;
  t.id = id;
  t.credits_max = max;
  t.credits_min = min;
  return t;
}

constexpr std::uint64_t kMs = 1'000'000;

TEST(CreditRule, BelowTargetTheBudgetGrowsAdditively) {
  CreditSettings s;  // increase_permille 50: 5 % of credits_max per refresh
  const TenantConfig t = credited(1, 200);
  CreditSample idle;  // nothing waiting: no delay
  idle.interval_ns = 10 * kMs;
  CreditDecision d = next_budget(s, t, 100, idle);
  EXPECT_EQ(d.delay_us, 0u);
  EXPECT_EQ(d.budget, 110u);
  EXPECT_EQ(d.retry_after_us, s.refresh_us);
  EXPECT_EQ(next_budget(s, t, 195, idle).budget, 200u) << "never above credits_max";
  EXPECT_EQ(next_budget(s, credited(1, 10), 3, idle).budget, 4u) << "at least one credit more";

  CreditSample draining;  // 50 waiting, 100 done in 10 ms: 5 ms of queue, under a 10 ms target
  draining.backlog = 50;
  draining.completed = 100;
  draining.interval_ns = 10 * kMs;
  TenantConfig patient = t;
  patient.credit_delay_target_us = 10'000;
  d = next_budget(s, patient, 100, draining);
  EXPECT_EQ(d.delay_us, 5'000u);
  EXPECT_EQ(d.budget, 110u);
}

TEST(CreditRule, AboveTargetTheBudgetIsCutByHowFarTheDelayIsOver) {
  CreditSettings s;  // target 1000 us, decrease_permille 500
  const TenantConfig t = credited(1, 1000, 10);
  CreditSample slow;  // 40 waiting, 10 done in 10 ms: 40 ms of queue, 39 ms over
  slow.backlog = 40;
  slow.completed = 10;
  slow.interval_ns = 10 * kMs;
  CreditDecision d = next_budget(s, t, 400, slow);
  EXPECT_EQ(d.delay_us, 40'000u);
  // factor 1 - 0.5 * 39/40 = 0.5125, at least 0.5
  EXPECT_EQ(d.budget, 205u);
  EXPECT_EQ(d.retry_after_us, s.refresh_us + 39'000u) << "a retry should wait out the excess delay";

  CreditSample mild = slow;  // 2 ms of queue: factor 1 - 0.5 * 1/2 = 0.75
  mild.backlog = 2;
  EXPECT_EQ(next_budget(s, t, 400, mild).budget, 300u);

  CreditSample stuck;  // waiting requests, nothing completed: the largest cut
  stuck.backlog = 5;
  stuck.interval_ns = 10 * kMs;
  d = next_budget(s, t, 400, stuck);
  EXPECT_EQ(d.budget, 200u);
  EXPECT_EQ(next_budget(s, t, 12, stuck).budget, 10u) << "never below credits_min";
  EXPECT_LE(next_budget(s, t, 12, stuck).retry_after_us, 1'000'000u) << "retry capped at 1 s";
}

TEST(CreditRule, ThePerTenantTargetOverridesTheDefault) {
  CreditSettings s;
  s.target_delay_us = 100;
  CreditSample sample;  // 1 ms of queue
  sample.backlog = 1;
  sample.completed = 10;
  sample.interval_ns = 10 * kMs;
  TenantConfig t = credited(1, 100);
  EXPECT_LT(next_budget(s, t, 50, sample).budget, 50u) << "over the 100 us default";
  t.credit_delay_target_us = 2'000;
  EXPECT_GT(next_budget(s, t, 50, sample).budget, 50u) << "under its own 2 ms target";
}

// The refresher: budgets from worker counters, published to the sink and the cells.
class Refresher : public ::testing::Test {
 protected:
  Refresher()
      : refresher_(
            settings(), [this](std::size_t w) { return load_[w]; },
            [this](std::uint32_t id, std::int64_t credits, std::uint32_t retry) {
              sunk_[id] = {credits, retry};
            },
            [this](std::uint32_t id) { cleared_.push_back(id); }) {}
  static CreditSettings settings() {
    CreditSettings s;
    s.refresh_us = 10'000;
    s.target_delay_us = 1'000;
    return s;
  }
  std::map<std::size_t, WorkerLoad> load_;
  std::map<std::uint32_t, std::pair<std::int64_t, std::uint32_t>> sunk_;
  std::vector<std::uint32_t> cleared_;
  CreditRefresher refresher_;
};

TEST_F(Refresher, BudgetsFollowTheTenantsOwnWorkers) {
  const std::vector<WorkerConfig> workers{{"w0"}, {"w1"}, {"w2"}};
  const std::vector<AgentConfig> agents{{7, 1, "a", {"w0", "w1"}}, {8, 2, "b", {"w2"}}};
  refresher_.configure({credited(1, 100), credited(2, 100), TenantConfig{3, "free", 0, 0, {}}}, agents, workers,
                       1000 * kMs);
  EXPECT_EQ(sunk_[1].first, 100) << "a new tenant starts at credits_max";
  EXPECT_EQ(sunk_[2].first, 100);
  EXPECT_FALSE(sunk_.contains(3)) << "credits off: nothing written, unlimited";
  ASSERT_NE(refresher_.cell(1), nullptr);
  EXPECT_EQ(refresher_.cell(1)->credits.load(), 100);
  EXPECT_EQ(refresher_.cell(3), nullptr);
  EXPECT_EQ(refresher_.next_refresh_ns(), 1010 * kMs);

  refresher_.tick(1005 * kMs);
  EXPECT_EQ(refresher_.budget(1), 100u) << "not due yet";
  // Tenant 1's workers back up (30 waiting, 10 done in 10 ms: 30 ms of delay); tenant 2's drain.
  load_[0] = {5, 20};
  load_[1] = {5, 10};
  load_[2] = {500, 0};
  refresher_.tick(1010 * kMs);
  EXPECT_EQ(refresher_.budget(1), 51u) << "cut: 100 x (1 - 0.5 x 29/30)";
  EXPECT_EQ(refresher_.budget(2), 100u) << "draining under target: stays at max";
  EXPECT_EQ(sunk_[1].first, 51);
  EXPECT_EQ(refresher_.cell(1)->credits.load(), 51);
  EXPECT_EQ(sunk_[1].second, 10'000u + 29'000u);
  EXPECT_EQ(refresher_.cell(1)->retry_after_us.load(), 39'000u);

  // The backlog clears: additive increase again.
  load_[0] = {40, 0};
  load_[1] = {40, 0};
  refresher_.tick(1020 * kMs);
  EXPECT_EQ(refresher_.budget(1), 56u);
  EXPECT_EQ(refresher_.next_refresh_ns(), 1030 * kMs);
}

TEST_F(Refresher, ARefreshReplacesWhatWasLeftAndSpendingShowsInTheCell) {
  refresher_.configure({credited(1, 10)}, {}, {}, 0);
  const CreditCell* cell = refresher_.cell(1);
  ASSERT_NE(cell, nullptr);
  for (int i = 0; i < 14; ++i) cell->credits.fetch_sub(1);  // lcores overspent by racing
  EXPECT_EQ(cell->credits.load(), -4);
  refresher_.tick(10 * kMs);
  EXPECT_EQ(cell->credits.load(), 10) << "a new budget, not an addition to the debt";
}

TEST_F(Refresher, NewTablesKeepUnchangedBudgetsAndClearDroppedTenants) {
  refresher_.configure({credited(1, 100), credited(2, 50)}, {}, {}, 0);
  load_[0] = {0, 10};  // not served by any worker: tenant budgets only see their own
  refresher_.tick(10 * kMs);
  EXPECT_EQ(refresher_.budget(1), 100u);
  const CreditCell* cell = refresher_.cell(1);
  sunk_.clear();
  refresher_.configure({credited(1, 100), credited(2, 60)}, {}, {}, 12 * kMs);
  EXPECT_FALSE(sunk_.contains(1)) << "unchanged: its budget and the credits left stay";
  EXPECT_EQ(sunk_[2].first, 60) << "changed: starts at the new credits_max";
  EXPECT_EQ(refresher_.cell(1), cell) << "cells are stable: route tables point at them";
  refresher_.configure({credited(2, 60)}, {}, {}, 14 * kMs);
  EXPECT_EQ(cleared_, (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(refresher_.cell(1), nullptr);
  refresher_.configure({}, {}, {}, 16 * kMs);
  EXPECT_EQ(refresher_.next_refresh_ns(), UINT64_MAX) << "no tenant with credits: nothing to refresh";
}

}  // namespace
}  // namespace axon::dataplane
