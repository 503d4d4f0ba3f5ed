// axon::tuning against a root-prefix sandbox: every verb on every host-wide section,
// tuned's > and < semantics, skips with reasons, profile switches, the lock, a corrupt
// snapshot, and a kill -9 at every point of an apply followed by a full rollback.
// Also the profile loader's strictness and the CPU list/mask conversions.
#include "axon/tuning/tuning.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "axon/tuning/service.h"

#include "cpus.h"
#include "profile.h"
#include "sandbox.h"
#include "snapshot.h"

namespace axon::tuning {
namespace {

using test::Sandbox;

constexpr const char* kBase = R"(
[profile]
description = "sandbox base"
[sysctl]
"vm.swappiness" = 30
"net.core.somaxconn" = ">4096"
[memory]
hugepages_2m_per_node = ">64"
transparent_hugepages = "madvise"
)";

constexpr const char* kHost = R"(
[profile]
description = "sandbox host"
include = "base"
[sysctl]
"vm.swappiness" = "<10"
"vm.max_map_count" = ">262144"
"kernel.numa_balancing" = 0
"net.core.rmem_max" = 16777216
"net.ipv4.ip_local_port_range" = "20000 60999"
"kernel.not_here" = 1
[memory]
transparent_hugepages = "never"
transparent_hugepages_defrag = "never"
[cpu]
governor = "performance"
idle_max_latency_us = 10
idle_cpus = "dataplane"
[irq]
steer = "nic"
default_affinity = true
[net]
napi_defer_hard_irqs = 2
gro_flush_timeout = 200000
threaded_napi = true
[nic]
combined_queues = "dataplane"
[cgroup]
dataplane = "system.slice/axon-dataplane.service"
controlplane = "system.slice/axon-controlplane.service"
[kernel_cmdline]
params = ["nohz_full={dataplane}", "irqaffinity={housekeeping}"]
)";

// "always [madvise] never" -> "madvise\n": a real THP file lists every choice and brackets
// the selected one after any write; a sandbox file keeps just what was written.
std::string selected(const std::string& content) {
  const auto open = content.find('['), close = content.find(']');
  if (open == std::string::npos || close == std::string::npos) return content;
  return content.substr(open + 1, close - open - 1) + "\n";
}

// The files whose content differs between two sandbox trees, one per line ("" = same).
std::string tree_diff(const std::map<std::string, std::string>& now, const std::map<std::string, std::string>& then) {
  std::string out;
  for (const auto& [path, content] : then) {
    auto it = now.find(path);
    if (it == now.end()) {
      out += path + ": gone\n";
    } else if (selected(it->second) != selected(content)) {
      out += path + ": '" + it->second + "', was '" + content + "'\n";
    }
  }
  for (const auto& [path, content] : now) {
    if (!then.contains(path)) out += path + ": new\n";
  }
  return out;
}

class TuningSandbox : public ::testing::Test {
 protected:
  void SetUp() override {
    box_.profile("base", kBase);
    box_.profile("host", kHost);
    options_.root = box_.root();
    options_.state_dir = box_.state_dir();
    options_.profile_dirs = {box_.profile_dir()};
    options_.cores = std::vector<int>{2, 3};
    options_.interfaces = {"axs0"};
  }

  const Item* find(const Report& r, const std::string& knob) {
    for (const auto& i : r.items) {
      if (i.knob == knob) return &i;
    }
    return nullptr;
  }

  Sandbox box_;
  Options options_;
};

TEST_F(TuningSandbox, CheckReportsEveryKnobAndTouchesNothing) {
  const auto before = box_.tree();
  auto r = check("host", options_);
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(tree_diff(box_.tree(), before), "");
  EXPECT_EQ(r.value().includes, std::vector<std::string>{"base"});

  const Item* swappiness = find(r.value(), "vm.swappiness");
  ASSERT_NE(swappiness, nullptr);
  EXPECT_EQ(swappiness->status, Status::change);
  EXPECT_EQ(swappiness->want, "<=10");  // the include's 30 is overridden
  EXPECT_EQ(swappiness->now, "10");
  const Item* somaxconn = find(r.value(), "net.core.somaxconn");
  ASSERT_NE(somaxconn, nullptr);
  EXPECT_EQ(somaxconn->status, Status::ok) << "8192 is above >4096: only raise leaves it";
  const Item* missing = find(r.value(), "kernel.not_here");
  ASSERT_NE(missing, nullptr);
  EXPECT_EQ(missing->status, Status::skipped);
  EXPECT_NE(missing->reason.find("does not exist"), std::string::npos) << missing->reason;
  const Item* queues = find(r.value(), "axs0 combined queues");
  ASSERT_NE(queues, nullptr);
  EXPECT_EQ(queues->status, Status::skipped) << "no such interface in this namespace";
  const Item* cp = find(r.value(), "controlplane cpuset (system.slice/axon-controlplane.service)");
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(cp->status, Status::skipped);
  EXPECT_NE(cp->reason.find("never creates groups"), std::string::npos);

  ASSERT_EQ(r.value().cmdline.size(), 2u);
  EXPECT_EQ(r.value().cmdline_fix, "nohz_full=2-3 irqaffinity=0-1");
  const std::string text = render_text(r.value());
  EXPECT_NE(text.find("nohz_full=2-3 irqaffinity=0-1"), std::string::npos) << text;
  EXPECT_NE(text.find("summary:"), std::string::npos);
  EXPECT_NE(render_json(r.value()).find("\"verb\": \"check\""), std::string::npos);
}

TEST_F(TuningSandbox, ApplyVerifyDiffRollbackRoundTrip) {
  box_.put("/proc/cmdline", "BOOT_IMAGE=/vmlinuz ro nohz_full=2,3 irqaffinity=0-1\n");
  const auto before = box_.tree();
  auto applied = apply("host", options_);
  ASSERT_TRUE(applied) << applied.message();
  EXPECT_EQ(applied.value().count(Status::failed), 0u);

  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "10\n");
  EXPECT_EQ(box_.get("/proc/sys/vm/max_map_count"), "262144\n");
  EXPECT_EQ(box_.get("/proc/sys/net/core/somaxconn"), "8192\n") << "only raise: a larger value stays";
  EXPECT_EQ(box_.get("/proc/sys/net/ipv4/ip_local_port_range"), "20000 60999\n");
  for (int node : {0, 1}) {
    EXPECT_EQ(
        box_.get("/sys/devices/system/node/node" + std::to_string(node) + "/hugepages/hugepages-2048kB/nr_hugepages"),
        "64\n");
  }
  EXPECT_EQ(box_.get("/sys/kernel/mm/transparent_hugepage/enabled"), "never\n");
  for (int cpu = 0; cpu < 4; ++cpu) {
    const std::string c = "/sys/devices/system/cpu/cpu" + std::to_string(cpu);
    EXPECT_EQ(box_.get(c + "/cpufreq/scaling_governor"), "performance\n");
    // Only the data plane cores, only the state above 10 us.
    EXPECT_EQ(box_.get(c + "/cpuidle/state2/disable"), cpu >= 2 ? "1\n" : "0\n") << c;
    EXPECT_EQ(box_.get(c + "/cpuidle/state1/disable"), "0\n") << c;
  }
  for (int irq : {40, 41, 42}) EXPECT_EQ(box_.get("/proc/irq/" + std::to_string(irq) + "/smp_affinity_list"), "0-1\n");
  EXPECT_EQ(box_.get("/proc/irq/1/smp_affinity_list"), "0-3\n") << "steer = nic moves only the NIC's IRQs";
  EXPECT_EQ(box_.get("/proc/irq/default_smp_affinity"), "00000003\n");
  EXPECT_EQ(box_.get("/sys/class/net/axs0/napi_defer_hard_irqs"), "2\n");
  EXPECT_EQ(box_.get("/sys/class/net/axs0/threaded"), "1\n");
  EXPECT_EQ(box_.get("/sys/fs/cgroup/system.slice/axon-dataplane.service/cpuset.cpus"), "0,2-3\n");
  EXPECT_TRUE(std::filesystem::exists(box_.state_dir() + "/snapshot.json"));

  auto verified = verify("host", options_);
  ASSERT_TRUE(verified) << verified.message();
  EXPECT_TRUE(verified.value().in_force()) << render_text(verified.value());
  auto d = diff("host", options_);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d.value().items.empty()) << render_text(d.value());
  auto applied_name = applied_profile(options_);
  ASSERT_TRUE(applied_name);
  EXPECT_EQ(applied_name.value(), std::optional<std::string>("host"));

  // Drift: someone changes a knob behind axon's back.
  box_.put("/proc/sys/vm/max_map_count", "1000\n");
  verified = verify("host", options_);
  ASSERT_TRUE(verified);
  EXPECT_FALSE(verified.value().in_force());
  d = diff("host", options_);
  ASSERT_TRUE(d);
  ASSERT_EQ(d.value().items.size(), 1u) << render_text(d.value());
  EXPECT_EQ(d.value().items[0].knob, "vm.max_map_count");
  EXPECT_EQ(d.value().items[0].live, "1000");

  auto rolled = rollback(options_);
  ASSERT_TRUE(rolled) << rolled.message();
  EXPECT_EQ(rolled.value().count(Status::failed), 0u);
  EXPECT_EQ(tree_diff(box_.tree(), before), "") << "rollback restores every file exactly";
  EXPECT_FALSE(std::filesystem::exists(box_.state_dir() + "/snapshot.json"));
  auto again = rollback(options_);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again.value().items.empty()) << "a second rollback has nothing to do";
}

TEST_F(TuningSandbox, KnobsThatCannotBeSetAreSkippedNotFatal) {
  // A directory where the knob should be: the write fails (EISDIR), as a refused write does.
  std::filesystem::remove(box_.root() + "/proc/sys/kernel/numa_balancing");
  std::filesystem::create_directories(box_.root() + "/proc/sys/kernel/numa_balancing");
  auto r = apply("host", options_);
  ASSERT_TRUE(r) << r.message();
  const Item* numa = find(r.value(), "kernel.numa_balancing");
  ASSERT_NE(numa, nullptr);
  EXPECT_EQ(numa->status, Status::skipped);
  EXPECT_FALSE(numa->reason.empty());
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "10\n") << "the rest of the profile still applies";
  // The governor of a VM: no cpufreq at all.
  Sandbox vm;
  vm.profile("base", kBase);
  vm.profile("host", kHost);
  std::filesystem::remove_all(vm.root() + "/sys/devices/system/cpu/cpu0/cpufreq");
  Options o = options_;
  o.root = vm.root();
  o.state_dir = vm.state_dir();
  auto c = check("host", o);
  ASSERT_TRUE(c);
  const Item* gov = find(c.value(), "cpu governor");
  ASSERT_NE(gov, nullptr);
  EXPECT_EQ(gov->status, Status::skipped);
  EXPECT_NE(gov->reason.find("no cpufreq"), std::string::npos);
}

TEST_F(TuningSandbox, ProfileSwitchRestoresWhatTheNewProfileDoesNotSet) {
  const auto before = box_.tree();
  ASSERT_TRUE(apply("host", options_));
  ASSERT_EQ(box_.get("/proc/sys/vm/max_map_count"), "262144\n");
  // base sets swappiness 30 and hugepages; it does not set max_map_count.
  auto r = apply("base", options_);
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(box_.get("/proc/sys/vm/max_map_count"), "65530\n") << "not in base: back to the original";
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "30\n");
  EXPECT_EQ(box_.get("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"), "powersave\n");
  auto rolled = rollback(options_);
  ASSERT_TRUE(rolled);
  EXPECT_EQ(tree_diff(box_.tree(), before), "") << "the originals are the values from before the first apply";
}

TEST_F(TuningSandbox, KillNineAtEveryPointOfApplyStillRollsBackFully) {
  // How many writes a full apply makes, on a throwaway copy.
  std::size_t writes = 0;
  {
    Sandbox probe;
    probe.profile("base", kBase);
    probe.profile("host", kHost);
    Options o = options_;
    o.root = probe.root();
    o.state_dir = probe.state_dir();
    o.profile_dirs = {probe.profile_dir()};
    ASSERT_TRUE(apply("host", o, [&](const Item&) { ++writes; }));
  }
  ASSERT_GT(writes, 20u);

  for (std::size_t kill_after = 1; kill_after <= writes; ++kill_after) {
    Sandbox box;
    box.profile("base", kBase);
    box.profile("host", kHost);
    Options o = options_;
    o.root = box.root();
    o.state_dir = box.state_dir();
    o.profile_dirs = {box.profile_dir()};
    const auto before = box.tree();

    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      std::size_t n = 0;
      (void)apply("host", o, [&](const Item&) {
        if (++n == kill_after) ::kill(::getpid(), SIGKILL);
      });
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "kill point " << kill_after;
    ASSERT_NE(box.tree(), before) << "kill point " << kill_after << ": something was applied";

    auto rolled = rollback(o);
    ASSERT_TRUE(rolled) << "kill point " << kill_after << ": " << rolled.message();
    EXPECT_EQ(rolled.value().count(Status::failed), 0u);
    ASSERT_EQ(tree_diff(box.tree(), before), "") << "kill -9 after " << kill_after << " of " << writes << " writes";
    ASSERT_FALSE(std::filesystem::exists(box.state_dir() + "/snapshot.json"));
  }
}

TEST_F(TuningSandbox, SecondApplyWaitsForTheLock) {
  auto lock = StateLock::acquire(options_);
  ASSERT_TRUE(lock);
  const auto before = box_.tree();
  auto r = apply("host", options_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), TuningError::locked);
  EXPECT_EQ(tree_diff(box_.tree(), before), "");
  auto rb = rollback(options_);
  ASSERT_FALSE(rb);
  EXPECT_EQ(rb.code(), TuningError::locked);
}

TEST_F(TuningSandbox, CorruptSnapshotStopsApplyAndRollback) {
  std::filesystem::create_directories(box_.state_dir());
  { std::ofstream(box_.state_dir() + "/snapshot.json") << "{\"format\": 1, \"entries\": ["; }
  const auto before = box_.tree();
  auto r = apply("host", options_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), TuningError::snapshot_corrupt);
  EXPECT_NE(r.message().find("inspect it"), std::string::npos);
  EXPECT_EQ(tree_diff(box_.tree(), before), "");
  auto rb = rollback(options_);
  ASSERT_FALSE(rb);
  EXPECT_EQ(rb.code(), TuningError::snapshot_corrupt);
}

TEST_F(TuningSandbox, RollbackRefusesAnotherRoot) {
  ASSERT_TRUE(apply("host", options_));
  Options other = options_;
  other.root = "/";
  auto rb = rollback(other);
  ASSERT_FALSE(rb);
  EXPECT_EQ(rb.code(), TuningError::invalid_input);
  EXPECT_NE(rb.message().find("--root"), std::string::npos);
  ASSERT_TRUE(rollback(options_));
}

TEST_F(TuningSandbox, UnknownCoresSkipTheKnobsThatNeedThem) {
  options_.cores.reset();
  options_.interfaces.clear();
  auto r = check("host", options_);
  ASSERT_TRUE(r) << r.message();
  const Item* irq = find(r.value(), "irq affinity");
  ASSERT_NE(irq, nullptr);
  EXPECT_EQ(irq->status, Status::skipped);
  EXPECT_NE(irq->reason.find("--dataplane-config"), std::string::npos);
  for (const auto& c : r.value().cmdline) EXPECT_TRUE(c.unknown);
}

TEST_F(TuningSandbox, DataPlaneConfigPlacesTheKnobs) {
  const std::string cfg = box_.profile_dir() + "/dataplane.toml";
  std::ofstream(cfg) << "[dataplane]\ninterface = \"axs0\"\ncores = [3, 2]\nqueues = [0, 1]\n[xdp]\nzero_copy = true\n";
  options_.cores.reset();
  options_.interfaces.clear();
  options_.dataplane_config = cfg;
  auto r = check("host", options_);
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r.value().host.dataplane_cpus, (std::vector<int>{2, 3}));
  EXPECT_EQ(r.value().host.interfaces, std::vector<std::string>{"axs0"});
  EXPECT_EQ(r.value().host.cores_from, cfg);
  options_.cores = std::vector<int>{7};
  auto bad = check("host", options_);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.code(), TuningError::invalid_input) << "core 7 is not online in the sandbox";
}

// --- profile loading ---------------------------------------------------------------------

class ProfileLoad : public ::testing::Test {
 protected:
  Sandbox box_;
  TResult<Profile> load(const std::string& name) { return load_profile(name, {box_.profile_dir()}); }
};

TEST_F(ProfileLoad, UnknownKeyNamesFileAndLine) {
  box_.profile("typo", "[profile]\ndescription = \"x\"\n[memory]\nhugepages_2m_per_nod = 5\n");
  auto p = load("typo");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.code(), TuningError::invalid_profile);
  EXPECT_NE(p.message().find("typo.toml:4:"), std::string::npos) << p.message();
  EXPECT_NE(p.message().find("hugepages_2m_per_nod"), std::string::npos);
}

TEST_F(ProfileLoad, UnknownTableAndUnquotedSysctlAreErrors) {
  box_.profile("table", "[sysctls]\n\"vm.swappiness\" = 1\n");
  EXPECT_FALSE(load("table"));
  box_.profile("unquoted", "[sysctl]\nvm.swappiness = 1\n");
  auto p = load("unquoted");
  ASSERT_FALSE(p);
  EXPECT_NE(p.message().find("quote sysctl names"), std::string::npos) << p.message();
}

TEST_F(ProfileLoad, RaiseLowerOperatorsNeedNumbers) {
  box_.profile("ops", "[sysctl]\n\"vm.swappiness\" = \"<ten\"\n");
  auto p = load("ops");
  ASSERT_FALSE(p);
  EXPECT_NE(p.message().find("only raise"), std::string::npos) << p.message();
  box_.profile("ok", "[sysctl]\n\"a.b\" = \">5\"\n\"c.d\" = \"<7\"\n\"e.f\" = true\n\"g.h\" = \"1 2\"\n");
  auto q = load("ok");
  ASSERT_TRUE(q) << q.message();
  ASSERT_EQ(q.value().sysctls.size(), 4u);
  EXPECT_EQ(q.value().sysctls[0].second.display(), ">=5");
  EXPECT_EQ(q.value().sysctls[1].second.display(), "<=7");
  EXPECT_EQ(q.value().sysctls[2].second.value, "1");
  EXPECT_EQ(q.value().sysctls[3].second.value, "1 2");
}

TEST_F(ProfileLoad, IncludesMergeAndCyclesAreRefused) {
  box_.profile("a", "[profile]\ninclude = \"b\"\n[sysctl]\n\"x.y\" = 1\n");
  box_.profile("b", "[profile]\ninclude = \"a\"\n");
  auto p = load("a");
  ASSERT_FALSE(p);
  EXPECT_NE(p.message().find("include cycle"), std::string::npos) << p.message();
  box_.profile("c", "[profile]\ninclude = [\"d\", \"e\"]\n[sysctl]\n\"k.one\" = 3\n");
  box_.profile("d", "[sysctl]\n\"k.one\" = 1\n\"k.two\" = 1\n[irq]\nsteer = \"nic\"\n");
  box_.profile("e", "[sysctl]\n\"k.two\" = 2\n");
  auto q = load("c");
  ASSERT_TRUE(q) << q.message();
  EXPECT_EQ(q.value().includes, (std::vector<std::string>{"d", "e"}));
  ASSERT_EQ(q.value().sysctls.size(), 2u);
  EXPECT_EQ(q.value().sysctls[0].second.value, "3") << "the including profile wins";
  EXPECT_EQ(q.value().sysctls[1].second.value, "2") << "a later include wins over an earlier one";
  EXPECT_EQ(q.value().irq_steer, IrqSteer::nic);
  auto missing = load("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.code(), TuningError::profile_not_found);
}

TEST(ShippedProfiles, AllLoad) {
  for (const char* name : {"latency", "throughput", "balanced", "dev"}) {
    auto p = load_profile(name, {AXON_TUNING_PROFILE_DIR});
    ASSERT_TRUE(p) << name << ": " << p.message();
    EXPECT_FALSE(p.value().description.empty()) << name;
  }
  auto dev = load_profile("dev", {AXON_TUNING_PROFILE_DIR});
  ASSERT_TRUE(dev);
  EXPECT_TRUE(dev.value().cmdline.empty()) << "dev must be safe on a VM: nothing at boot";
  EXPECT_EQ(dev.value().irq_steer, IrqSteer::none);
  EXPECT_FALSE(dev.value().governor.has_value());
}

// --- CPU sets --------------------------------------------------------------------------

TEST(CpuSets, ListsAndMasksRoundTrip) {
  EXPECT_EQ(parse_cpulist("0-3,8,10-11\n"), (CpuSet{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpulist(""), CpuSet{});
  EXPECT_FALSE(parse_cpulist("3-1"));
  EXPECT_FALSE(parse_cpulist("a"));
  EXPECT_FALSE(parse_cpulist("0-99999999"));
  EXPECT_EQ(format_cpulist({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
  EXPECT_EQ(parse_cpumask("00000000,00000003"), (CpuSet{0, 1}));
  EXPECT_EQ(parse_cpumask("1,00000000"), (CpuSet{32}));
  EXPECT_EQ(format_cpumask({0, 1}, 2), "00000003");
  EXPECT_EQ(format_cpumask({33}, 40), "00000002,00000000");
  EXPECT_FALSE(parse_cpumask("xyz"));
}

}  // namespace
}  // namespace axon::tuning

namespace axon::tuning {
namespace {

// --- the control plane's component -------------------------------------------------------------

class ServiceSandbox : public TuningSandbox {
 protected:
  ServiceConfig config(bool apply_at_start) {
    ServiceConfig c;
    c.profile = "host";
    c.apply_at_start = apply_at_start;
    c.verify_interval = std::chrono::milliseconds(1000);
    c.options = options_;
    return c;
  }
};

TEST_F(ServiceSandbox, AppliesAtStartVerifiesPeriodicallyAndExportsDrift) {
  box_.put("/proc/cmdline", "ro nohz_full=2-3 irqaffinity=0-1\n");
  TuningService service(config(true));
  auto started = service.start();
  ASSERT_TRUE(started) << started.message();
  EXPECT_EQ(started.value().verb, Verb::apply);
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "10\n");
  auto s = service.state();
  EXPECT_TRUE(s.verified);
  EXPECT_TRUE(s.in_force);
  EXPECT_EQ(s.applied, std::optional<std::string>("host"));
  EXPECT_NE(service.metrics().find("axon_tuning_drift{profile=\"host\"} 0"), std::string::npos);

  box_.put("/proc/sys/vm/max_map_count", "1\n");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(service.tick(t0)) << "not due yet";
  EXPECT_TRUE(service.tick(t0 + std::chrono::seconds(2)));
  s = service.state();
  EXPECT_FALSE(s.in_force);
  EXPECT_EQ(s.drift, 1u);
  const std::string metrics = service.metrics();
  EXPECT_NE(metrics.find("axon_tuning_drift{profile=\"host\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("axon_tuning_in_force{profile=\"host\"} 0"), std::string::npos);
  EXPECT_NE(metrics.find("axon_tuning_verifications_total 2"), std::string::npos) << metrics;
}

TEST_F(ServiceSandbox, RestResourceRespectsRolesAndRefusesPaths) {
  TuningService service(config(false));
  ASSERT_TRUE(service.start());
  const auto before = box_.tree();
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "60\n") << "apply_at_start is off";

  auto r = service.handle("POST", "/v1/tuning/apply", "", "{\"profile\":\"host\"}", false);
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(tree_diff(box_.tree(), before), "") << "a reader changed nothing";
  EXPECT_EQ(service.handle("POST", "/v1/tuning/rollback", "", "", false).status, 403);
  EXPECT_EQ(service.handle("POST", "/v1/tuning/check", "", "", true).status, 405);
  EXPECT_EQ(service.handle("GET", "/v1/tuning/check", "profile=/etc/passwd", "", true).status, 400);
  EXPECT_EQ(service.handle("POST", "/v1/tuning/apply", "", "{\"profile\":\"../x.toml\"}", true).status, 400);
  EXPECT_EQ(service.handle("POST", "/v1/tuning/apply", "", "{\"profile\":\"host\",\"x\":1}", true).status, 400);
  EXPECT_EQ(service.handle("GET", "/v1/tuning/check", "profile=nope", "", false).status, 404);
  EXPECT_EQ(service.handle("GET", "/v1/tuning/nothing", "", "", false).status, 404);

  r = service.handle("GET", "/v1/tuning/check", "profile=host", "", false);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"verb\": \"check\""), std::string::npos);
  r = service.handle("GET", "/v1/tuning/profiles", "", "", false);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"name\":\"host\""), std::string::npos) << r.body;

  r = service.handle("POST", "/v1/tuning/apply", "", "{\"profile\":\"host\"}", true);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(box_.get("/proc/sys/vm/swappiness"), "10\n");
  r = service.handle("GET", "/v1/tuning", "", "", false);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"applied\":\"host\""), std::string::npos) << r.body;
  r = service.handle("GET", "/v1/tuning/diff", "", "", false);  // the configured profile
  EXPECT_EQ(r.status, 200);

  auto lock = StateLock::acquire(options_);
  ASSERT_TRUE(lock);
  EXPECT_EQ(service.handle("POST", "/v1/tuning/rollback", "", "", true).status, 409) << "locked by someone else";
}

}  // namespace
}  // namespace axon::tuning
