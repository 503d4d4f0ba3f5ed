// Worker identity rules (issue 11 items 15 and 17): the per-slot uid range and the user and
// command allowlists, as the config loader and the REST API apply them through check_agent.
#include "axon/controlplane/worker_identity.h"

#include <gtest/gtest.h>

#include "axon/controlplane/config.h"

namespace axon::controlplane {
namespace {

AgentSpec agent(const std::string& command, const std::string& user = "") {
  AgentSpec a;
  a.name = "a";
  a.id = 1;
  a.tenant = 1;
  a.command = {command};
  a.user = user;
  return a;
}

TEST(WorkerIdentity, UidRangeParsesAndGivesEachSlotItsOwnUid) {
  auto range = parse_uid_range("61000-61002");
  ASSERT_TRUE(range) << range.message();
  EXPECT_EQ(range->size(), 3u);
  EXPECT_EQ(uid_for_slot(*range, 0), uid_t(61000));
  EXPECT_EQ(uid_for_slot(*range, 2), uid_t(61002));
  EXPECT_FALSE(uid_for_slot(*range, 3));
  EXPECT_FALSE(uid_for_slot(UidRange{}, 0));
  for (const char* bad : {"", "61000", "0-10", "10-5", "a-b", "1-", "-5", "1-4294967295", "1 - 5"}) {
    EXPECT_FALSE(parse_uid_range(bad)) << bad;
  }
}

TEST(WorkerIdentity, CommandsMustBeAllowlisted) {
  WorkerPolicy policy{"nobody", {}, {}, {"/opt/axon/workers/", "/usr/bin/echo_worker"}};
  EXPECT_EQ(check_worker_identity(agent("/opt/axon/workers/w1"), policy), "");
  EXPECT_EQ(check_worker_identity(agent("/usr/bin/echo_worker"), policy), "");
  for (const char* bad : {"/bin/sh", "/opt/axon/workers/", "/opt/axon/workers/../../../bin/sh", "/opt/axon/workers//x",
                          "/opt/axon/workers/./x", "/usr/bin/echo_worker2", "/opt/axon/workersx"}) {
    std::string why = check_worker_identity(agent(bad), policy);
    EXPECT_NE(why.find("allowed_worker_commands"), std::string::npos) << bad << ": " << why;
  }
  // An empty allowlist allows nothing.
  policy.allowed_commands.clear();
  EXPECT_NE(check_worker_identity(agent("/usr/bin/echo_worker"), policy), "");
}

TEST(WorkerIdentity, UsersMustBeAllowlistedAndRootOnlyExplicitly) {
  WorkerPolicy policy{"nobody", {}, {"daemon"}, {"/bin/"}};
  EXPECT_EQ(check_worker_identity(agent("/bin/true"), policy), "");
  EXPECT_EQ(check_worker_identity(agent("/bin/true", "nobody"), policy), "");  // the default
  EXPECT_EQ(check_worker_identity(agent("/bin/true", "daemon"), policy), "");
  std::string why = check_worker_identity(agent("/bin/true", "root"), policy);
  EXPECT_NE(why.find("allowed_worker_users"), std::string::npos) << why;
  why = check_worker_identity(agent("/bin/true", "bin"), policy);
  EXPECT_NE(why.find("'bin' is not allowed"), std::string::npos) << why;
  // Root as the default user (empty or "root") without a uid range: refused.
  policy.worker_user = "";
  why = check_worker_identity(agent("/bin/true"), policy);
  EXPECT_NE(why.find("would run as root"), std::string::npos) << why;
  policy.worker_user = "root";
  EXPECT_NE(check_worker_identity(agent("/bin/true"), policy), "");
  EXPECT_NE(check_worker_identity(agent("/bin/true", "root"), policy), "");  // the default, but root
  // ... unless a uid range gives the workers their uids.
  policy.worker_uids = UidRange{61000, 61999};
  EXPECT_EQ(check_worker_identity(agent("/bin/true"), policy), "");
  // Listed explicitly: allowed.
  policy.allowed_users.push_back("root");
  EXPECT_EQ(check_worker_identity(agent("/bin/true", "root"), policy), "");
}

TEST(WorkerIdentity, ConfigKeysReachCheckAgent) {
  auto config = parse_config(
      "[controlplane]\nworker_uids = \"61000-61009\"\nallowed_worker_users = [\"daemon\"]\n"
      "allowed_worker_commands = [\"/bin/\"]\n[[tenants]]\nid = 1\nname = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\n"
      "tenant = 1\ncommand = [\"/bin/true\"]\n",
      "t.toml");
  ASSERT_TRUE(config) << config.message();
  EXPECT_EQ(config->worker_uids.first, uid_t(61000));
  EXPECT_EQ(config->worker_uids.last, uid_t(61009));
  EXPECT_EQ(check_agent(agent("/usr/bin/env"), config.value()).find("agent 'a': command '/usr/bin/env' is not allowed"),
            0u);
  auto root_agent = parse_config(
      "[controlplane]\nworker_user = \"nobody\"\nallowed_worker_commands = [\"/bin/\"]\n[[tenants]]\nid = 1\n"
      "name = \"t\"\n[[agents]]\nname = \"a\"\nid = 1\ntenant = 1\ncommand = [\"/bin/true\"]\nuser = \"root\"\n",
      "t.toml");
  ASSERT_FALSE(root_agent);
  EXPECT_NE(root_agent.message().find("allowed_worker_users"), std::string::npos) << root_agent.message();
  auto bad_range = parse_config("[controlplane]\nworker_uids = \"0-10\"\n", "t.toml");
  ASSERT_FALSE(bad_range);
  EXPECT_NE(bad_range.message().find("worker_uids"), std::string::npos) << bad_range.message();
}

}  // namespace
}  // namespace axon::controlplane
